"""Weight-only FP8 (``EngineConfig.weights='fp8'``) and the few-rows kernel on bf16 weights
(``EngineConfig.linear_kernel='auto'``): the quantization math and the options' checks on the CPU; the Triton
kernel, its tuning against cuBLAS, its CUDA-graph replay and the engine on a GPU of compute capability >= 8.9
(skipped elsewhere).
Where Triton is installed the kernel's paths (one-launch split-K, the one-row path) also run on CPU tensors
through its interpreter (``TRITON_INTERPRET=1``, set by ``test/conftest.py``), fp16 activations for the
tensor-core path there (the interpreter's ``tl.dot`` has no bf16: numpy lacks it); CI has no Triton: skipped.

GPU part, on a machine without ROS: ``python3 -m pytest test/engine/test_quantization.py --noconftest -k cuda``.
"""
import importlib.util
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lionfs_ros.engine import EngineConfig, EngineConfigError
from lionfs_ros.engine.quantization import (FP8_MAX, Fp8Weight, dequantize_fp8, fp8_linear_reference, fp8_problem,
                                            linear, quantize_fp8)

E4M3_MANTISSA_BITS = 3
E4M3_MIN_NORMAL = 2.0 ** -6
E4M3_SUBNORMAL_STEP = 2.0 ** -9
CUDA_FP8 = torch.cuda.is_available() and fp8_problem(torch.device("cuda")) is None
needs_fp8_gpu = pytest.mark.skipif(not CUDA_FP8, reason="needs a CUDA GPU of compute capability >= 8.9 with Triton")
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton")


def _weight(rows: int, cols: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    row_scale = torch.logspace(-3, 1, rows)[torch.randperm(rows, generator=g)]  # rows of very different magnitudes
    return torch.randn(rows, cols, generator=g) * row_scale[:, None]


def test_quantize_keeps_each_row_within_e4m3_rounding_of_its_own_scale():
    w = _weight(48, 96, seed=1)
    w[5] = 0.0  # a row of zeros
    q = quantize_fp8(w)
    assert q.codes.dtype == torch.float8_e4m3fn and q.codes.shape == w.shape and q.scale.shape == (48,)
    assert q.scale.dtype == torch.float32 and torch.isfinite(q.scale).all()
    back = dequantize_fp8(q)
    assert torch.equal(back[5], torch.zeros(96))
    # Each row's largest magnitude maps to the top code, 448, and comes back as itself.
    codes = q.codes.float()
    nonzero = [r for r in range(48) if r != 5]
    assert torch.equal(codes.abs().amax(1)[nonzero], torch.full((47,), FP8_MAX))
    top = w.abs().argmax(1)
    torch.testing.assert_close(back[nonzero, top[nonzero]], w[nonzero, top[nonzero]], rtol=1e-6, atol=0)
    # Every element: round-to-nearest with 3 mantissa bits (normal codes), or the subnormal step.
    scaled = (w / q.scale[:, None]).abs()
    bound = torch.where(scaled >= E4M3_MIN_NORMAL, scaled * 2.0 ** -(E4M3_MANTISSA_BITS + 1),
                        torch.full_like(scaled, E4M3_SUBNORMAL_STEP / 2)) * q.scale[:, None]
    assert ((back - w).abs() <= bound * (1 + 1e-6)).all()
    # Per-channel scales: a small row is not flattened by a large one (a per-tensor scale would zero it).
    small = min(nonzero, key=lambda r: float(q.scale[r]))
    assert (back[small] - w[small]).norm() / w[small].norm() < 0.05


def test_quantize_in_row_chunks_gives_the_codes_of_the_whole_matrix(monkeypatch):
    from lionfs_ros.engine import quantization

    w, g = _weight(50, 24, seed=3), 1 + torch.randn(24, generator=torch.Generator().manual_seed(1)) / 4
    whole = quantize_fp8(w, g)
    monkeypatch.setattr(quantization, "QUANTIZE_ROWS", 7)  # 8 chunks, the last one short
    chunked = quantize_fp8(w, g)
    assert torch.equal(chunked.codes.view(torch.uint8), whole.codes.view(torch.uint8))
    assert torch.equal(chunked.scale, whole.scale) and chunked.norm_in_codes and whole.norm_in_codes
    folded = dequantize_fp8(whole)  # the codes are of W diag(g)
    assert (folded - w * g).norm() / (w * g).norm() < 0.05


def test_fp8_linear_reference_is_x_times_the_dequantized_weight():
    w = quantize_fp8(_weight(40, 72, seed=2))
    x, bias = torch.randn(7, 72, dtype=torch.float64), torch.randn(40, dtype=torch.float64)
    expected = x @ dequantize_fp8(w, torch.float64).t() + bias
    torch.testing.assert_close(fp8_linear_reference(x, w, bias), expected, rtol=1e-6, atol=1e-6)
    plain = torch.randn(40, 72, dtype=torch.float64)
    torch.testing.assert_close(linear(x, plain, bias), F.linear(x, plain, bias))  # a plain weight: F.linear
    assert isinstance(w, Fp8Weight) and w.nbytes() == 40 * 72 + 40 * 4


def test_the_weights_option_is_checked_and_refused_with_the_reason_off_gpu(baseline_model):
    with pytest.raises(EngineConfigError, match="weights"):
        EngineConfig(weights="int4").validate()
    with pytest.raises(EngineConfigError, match="static backend"):
        EngineConfig(weights="fp8", backend="dynamic").validate()
    assert EngineConfig().weights == "native"
    assert "cpu" in fp8_problem(torch.device("cpu"))
    from lionfs_ros.engine import StreamEngine
    from lionfs_ros.engine.backends import StaticBackend

    with pytest.raises(EngineConfigError, match="compute capability >= 8.9"):
        StreamEngine(baseline_model, EngineConfig(weights="fp8", kv_budget_tokens=600, evict_chunk_tokens=100))
    with pytest.raises(EngineConfigError, match="compute capability >= 8.9"):
        StaticBackend(baseline_model, EngineConfig(weights="fp8", kv_budget_tokens=600, evict_chunk_tokens=100),
                      use_graphs=False)


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("name", ["baseline_model", "fused_model"])
def test_static_decoder_with_fp8_weights_computes_the_dequantized_model(request, monkeypatch, name, fold):
    """The FP8 wiring (which weights, fused rows, biases, dropping layers) on the CPU: the static state with FP8
    weights equals the model's own decoder whose projections hold the dequantized weights; with ``fold_norms`` the
    RMSNorms' weights are in the q/k/v and gate/up codes, so the twin's norms have weight 1 and its projections are the
    dequantized ``W diag(g)``. The engine refuses FP8 off the GPU, so the device check is bypassed here; the reference
    math stands in for the kernel."""
    import copy

    from engine_parts import engine_config
    from lionfs_ros.engine import backends
    from lionfs_ros.engine.lm_state import DynamicLMState
    from test_static_backend import ATOL, feeds

    model = copy.deepcopy(request.getfixturevalue(name))
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():  # norms of weight other than 1 (a fresh model's are ones: folding them would change nothing)
        decoder = model.llm.get_decoder()
        for norm in [n for layer in decoder.layers for n in (layer.input_layernorm, layer.post_attention_layernorm)
                     ] + [decoder.norm]:
            norm.weight.data = 1 + torch.randn(norm.weight.shape, generator=gen).to(norm.weight) / 4
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for layer in twin.llm.get_decoder().layers:
            norms = ((layer.input_layernorm, (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj)),
                     (layer.post_attention_layernorm, (layer.mlp.gate_proj, layer.mlp.up_proj)))
            for norm, projs in norms:
                for proj in projs:  # rows are independent: each projection's rows as the fused codes hold them
                    q = quantize_fp8(proj.weight, norm.weight if fold else None)
                    proj.weight.data = dequantize_fp8(q, proj.weight.dtype)
                if fold:
                    norm.weight.data = torch.ones_like(norm.weight)
            for proj in (layer.self_attn.o_proj, layer.mlp.down_proj):
                proj.weight.data = dequantize_fp8(quantize_fp8(proj.weight), proj.weight.dtype)
        head, final = twin.llm.get_output_embeddings(), twin.llm.get_decoder().norm  # the head in FP8 too (fp8_head)
        head.weight = torch.nn.Parameter(dequantize_fp8(quantize_fp8(head.weight, final.weight if fold else None),
                                                        head.weight.dtype))  # its own tensor (tied to the embeddings?)
        if fold:
            final.weight.data = torch.ones_like(final.weight)
    monkeypatch.setattr(backends, "fp8_problem", lambda device: None)
    backend = backends.StaticBackend(
        model, engine_config(backend="static", attention="split", weights="fp8", fold_norms=fold), use_graphs=False)
    assert backend.fused.weights == "fp8" and isinstance(backend.fused.layers[0].qkv_weight, Fp8Weight)
    assert backend.fused.layers[0].qkv_weight.norm_in_codes == fold
    assert model.llm.get_decoder().layers[0].input_layernorm.weight.ne(1).any()  # the model's own norms are kept
    static, reference, plain = backend.main_state(), DynamicLMState(twin), DynamicLMState(model)
    moved = 0.0
    for ids, embeds in feeds(model):
        out = static.feed(ids, embeds)
        torch.testing.assert_close(out, reference.feed(ids, embeds), atol=ATOL, rtol=0)
        moved = max(moved, float((out - plain.feed(ids, embeds)).abs().max()))
    assert moved > 10 * ATOL  # FP8 did change the weights the static state ran with
    with pytest.raises(EngineConfigError, match="shared decoder"):
        backends.StaticBackend(model, engine_config(backend="static"), use_graphs=False, fused=backend.fused)


# The kernel: on the GPU, or on the CPU through Triton's interpreter.

@needs_triton
@pytest.mark.parametrize("m,config,bias", [
    (1, (16, 32, 128, 4, 4, 3, 0), False),  # a generated token, tensor cores, 3 slices (the last one short)
    (11, (16, 32, 128, 4, 4, 4, 0), True),  # a decided frame with a bias, 4 slices
    (1, (1, 32, 128, 4, 4, 4, 0), True),  # one row on the CUDA cores, 4 slices
    (11, (16, 16, 128, 4, 4, 1, 0), False),  # no split: scale and bias in the same program
    (11, (16, 32, 128, 4, 4, 4, 2), True),  # the operands swapped (the weight tile on the dot's left), 4 slices
    (11, (16, 16, 128, 4, 4, 1, 2), False),  # swapped, no split
    pytest.param(1, (16, 32, 128, 4, 4, 3, 1), False, marks=needs_fp8_gpu),  # the upcast without conversions (asm)
    pytest.param(11, (16, 32, 128, 4, 4, 4, 1), True, marks=needs_fp8_gpu),
    pytest.param(1, (1, 32, 128, 4, 4, 4, 1), True, marks=needs_fp8_gpu),
    pytest.param(11, (16, 64, 128, 4, 4, 2, 3), True, marks=needs_fp8_gpu),  # swapped, with the bit-moves upcast
])
def test_kernel_split_k_in_one_launch_equals_the_reference_bit_for_bit_every_call(m, config, bias):
    from lionfs_ros.engine.kernels.few_rows_linear import few_rows_linear, tile_counters

    device = "cuda" if CUDA_FP8 else "cpu"
    dtype = torch.bfloat16 if CUDA_FP8 or config[0] == 1 else torch.float16
    n, k = 72, 800  # 72: a partial column tile; 800 = 384 + 384 + 32 with 3 slices, 256 * 3 + 32 with 4
    torch.manual_seed(m)
    w = quantize_fp8(_weight(n, k, seed=n + m).to(device))
    x = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(n, device=device).to(dtype) if bias else None
    first = few_rows_linear(x, w.codes, w.scale, b, config)
    counters = tile_counters(1, x.device)
    assert not counters.any()  # every tile's last slice set its counter back
    second = few_rows_linear(x, w.codes, w.scale, b, config)
    assert tile_counters(1, x.device) is counters and not counters.any()
    ref = fp8_linear_reference(x.double(), w, None if b is None else b.double())
    assert first.dtype == dtype and first.shape == (m, n)
    assert torch.equal(first, second)  # the slices are summed in a fixed order
    rel = float((first.double() - ref).norm() / ref.norm())
    assert rel < 1e-2, rel  # output rounding (bf16/fp16); float32 sums


@pytest.mark.parametrize("m,config,dtype", [
    (1, (1, 32, 128, 4, 4, 3, 0), torch.bfloat16),  # a generated token on the CUDA cores, 3 slices (the last short)
    (1, (16, 32, 128, 4, 4, 4, 0), torch.float16),  # the same token on the tensor cores, 4 slices
    (11, (16, 32, 128, 4, 4, 4, 0), torch.float16),  # a decided frame, 4 slices
    (11, (16, 16, 128, 4, 4, 1, 0), torch.float16),  # no split
    (11, (16, 32, 128, 4, 4, 4, 2), torch.float16),  # the operands swapped
])
@needs_triton
def test_kernel_on_a_plain_weight_equals_the_product_bit_for_bit_every_call(m, config, dtype):
    from lionfs_ros.engine.kernels.few_rows_linear import few_rows_linear, tile_counters

    device = "cuda" if CUDA_FP8 else "cpu"
    dtype = torch.bfloat16 if CUDA_FP8 else dtype  # the interpreter's tl.dot has no bf16
    n, k = 72, 800
    w = (_weight(n, k, seed=m) / 10).to(device, dtype)
    x = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(n, device=device).to(dtype)
    first, second = few_rows_linear(x, w, None, b, config), few_rows_linear(x, w, None, b, config)
    assert not tile_counters(1, x.device).any()
    assert torch.equal(first, second) and first.dtype == dtype and first.shape == (m, n)
    ref = x.double() @ w.double().t() + b.double()
    rel = float((first.double() - ref).norm() / ref.norm())
    assert rel < 1e-2, rel
    with pytest.raises(ValueError, match="takes none"):
        few_rows_linear(x, w, torch.ones(n, device=device), b, config)
    with pytest.raises(ValueError, match="need their scale"):
        few_rows_linear(x, quantize_fp8(w.float()).codes, None, b, config)


@needs_triton
def test_untuned_plain_weights_and_long_feeds_run_cublas_fp8_codes_never():
    from lionfs_ros.engine.kernels.few_rows_linear import CUBLAS, SMALL_M, few_rows_linear, pick_config

    w = torch.randn(48, 64, dtype=torch.float16)
    assert pick_config(1, w) == CUBLAS and pick_config(SMALL_M + 1, w) == CUBLAS  # nothing tuned for this shape
    x = torch.randn(SMALL_M + 1, 64, dtype=torch.float16)
    assert torch.equal(few_rows_linear(x, w), F.linear(x, w))
    codes = quantize_fp8(w.float()).codes
    assert pick_config(SMALL_M + 1, codes) != CUBLAS  # no cuBLAS for FP8 codes (their few-rows tiles ask the GPU)


def test_the_linear_kernel_option_is_checked_and_runs_torch_off_the_gpu(baseline_model, monkeypatch):
    """``linear_kernel``: checked; on the CPU the decoder says why the kernel does not run and keeps plain weights.
    With the device check bypassed the layers' and the head's weights are ``StreamedWeight``s (on CPU tensors the
    products fall back to ``F.linear``): the static state still computes the model's own logits (the head's wiring)."""
    from engine_parts import engine_config
    from lionfs_ros.engine import backends, static_decoder
    from lionfs_ros.engine.lm_state import DynamicLMState
    from lionfs_ros.engine.quantization import StreamedWeight
    from test_static_backend import ATOL, feeds

    with pytest.raises(EngineConfigError, match="linear_kernel"):
        EngineConfig(linear_kernel="cutlass").validate()
    assert EngineConfig().linear_kernel == "auto"
    plain = backends.StaticBackend(baseline_model, engine_config(backend="static"), use_graphs=False)
    assert "CUDA" in plain.fused.linear_fallback and isinstance(plain.fused.layers[0].qkv_weight, torch.Tensor)
    assert plain.fused.linear_tuning == []
    monkeypatch.setattr(static_decoder, "few_rows_problem", lambda device, dtype=None: None)
    backend = backends.StaticBackend(baseline_model, engine_config(backend="static", attention="split"),
                                     use_graphs=False)
    fused = backend.fused
    assert fused.linear_fallback is None and isinstance(fused.head_weight, StreamedWeight)
    assert all(isinstance(getattr(fl, name), StreamedWeight) for fl in fused.layers
               for name in ("qkv_weight", "o_weight", "gate_up_weight", "down_weight"))
    static, reference = backend.main_state(), DynamicLMState(baseline_model)
    for ids, embeds in feeds(baseline_model):
        torch.testing.assert_close(static.feed(ids, embeds), reference.feed(ids, embeds), atol=ATOL, rtol=0)
    with pytest.raises(EngineConfigError, match="linear_kernel"):  # one decoder, one choice
        backends.StaticBackend(baseline_model, engine_config(backend="static", linear_kernel="torch"),
                               use_graphs=False, fused=fused)


# GPU: the kernel and the engine.

@needs_fp8_gpu
@pytest.mark.parametrize("m,n,k,bias", [(1, 6144, 4096, False), (11, 4096, 14336, False), (11, 28672, 4096, True),
                                        (16, 512, 256, False), (5, 200, 136, True), (40, 1000, 300, True),
                                        (185, 1024, 256, False)])
@pytest.mark.parametrize("split,flags", [(None, 0), (1, 0), (3, 0), (1, 1), (3, 1), (1, 2), (3, 3)])
def test_cuda_kernel_equals_the_reference(m, n, k, bias, split, flags):
    from lionfs_ros.engine.kernels.few_rows_linear import SMALL_M, few_rows_linear, pick_config

    torch.manual_seed(m * 7 + n)
    w = quantize_fp8(_weight(n, k, seed=n + k).cuda())
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, device="cuda", dtype=torch.bfloat16) if bias else None
    config = None if split is None or m > SMALL_M else (*pick_config(m, w.codes)[:5], split, flags)
    out = few_rows_linear(x, w.codes, w.scale, b, config)
    ref = fp8_linear_reference(x.double(), w, b)
    assert out.dtype == torch.bfloat16 and out.shape == (m, n) and torch.isfinite(out).all()
    rel = float((out.double() - ref).norm() / ref.norm())
    assert rel < 1e-2, rel  # bf16 output rounding; float32 sums


@needs_fp8_gpu
@pytest.mark.parametrize("config", [None, (16, 32, 256, 4, 4, 4, 0), (1, 32, 256, 4, 4, 4, 0), (16, 32, 256, 4, 4, 4, 1),
                                    (1, 32, 256, 4, 4, 4, 1), (16, 64, 256, 4, 4, 4, 3)])
def test_cuda_kernel_replays_in_a_cuda_graph(config):
    from lionfs_ros.engine.kernels.few_rows_linear import few_rows_linear, tile_counters

    w = quantize_fp8(torch.randn(3072, 1024, device="cuda"))
    rows = 1 if config and config[0] == 1 else 11
    x = torch.randn(rows, 1024, device="cuda", dtype=torch.bfloat16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        few_rows_linear(x, w.codes, w.scale, config=config)  # compile outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        out = few_rows_linear(x, w.codes, w.scale, config=config)
        counters = tile_counters(1, x.device)  # the capture stream's: the graph's split-K counters
    for _ in range(2):  # fresh inputs each time: the graph reads the buffer, not a copy
        x.copy_(torch.randn_like(x))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, few_rows_linear(x, w.codes, w.scale, config=config))
        assert not counters.any()


def _demo_decisions(**fields) -> tuple[list, object]:
    """The bundled demo model's decisions over 96 frames of a 12-frame camera loop (8 fps, decided at 2) on the GPU
    with these ``EngineConfig`` fields, and the engine's fused decoder."""
    from lionfs_ros.engine import StreamEngine
    from lionfs_ros.engine.bench.presets import camera_frames
    from lionfs_ros.model import LionFSModel
    from lionfs_ros.resources import demo_model_path

    model = LionFSModel.from_pretrained(demo_model_path(), device="cuda").eval()
    frames = camera_frames(12, (240, 320), seed=3)
    engine = StreamEngine(model, EngineConfig(answers=False, general_fps=2.0, kv_budget_tokens=2048, **fields))
    assert engine.backend.name == "static"
    steps = [engine.process_frame(frames[k % 12], k * 0.125) for k in range(96)]
    return [d for d in steps if d is not None], engine.backend.main.fused


def _compare(ours: list, theirs: list) -> tuple[int, float]:
    """(decisions equal, max |dP(interval)|) over two runs of the same frames."""
    assert len(ours) == len(theirs) >= 20, (len(ours), len(theirs))
    diff = np.abs(np.array([d.p_interval for d in ours]) - np.array([d.p_interval for d in theirs]))
    return sum(a.respond == b.respond for a, b in zip(ours, theirs)), float(diff.max())


@needs_fp8_gpu
def test_cuda_engine_with_fp8_weights_decides_like_native():
    runs = {}
    for weights in ("native", "fp8"):
        runs[weights], fused = _demo_decisions(weights=weights)
        assert fused.weights == weights
    same, diff = _compare(runs["fp8"], runs["native"])
    print(f"fp8 vs native: {same}/{len(runs['native'])} decisions equal, max |dP(interval)| {diff:.4f}")
    assert diff < 0.05 and same >= 0.9 * len(runs["native"]), (same, diff)


@needs_fp8_gpu
def test_cuda_tuning_on_plain_weights_keeps_the_faster_of_the_kernel_and_cublas():
    from lionfs_ros.engine.kernels.few_rows_linear import CUBLAS, TUNED, few_rows_linear, tuned_key
    from lionfs_ros.engine.kernels.few_rows_tuning import tune

    weights = [(torch.randn(6144, 4096, device="cuda", dtype=torch.bfloat16) * 0.02, None) for _ in range(4)]
    for rows in (1, 11):
        report = tune(weights, rows, deadline=time.monotonic() + 5.0)  # as the engine build: a few seconds of compiling
        assert report["cublas_us"] is not None and report["us"] <= report["cublas_us"]
        assert TUNED[tuned_key(rows, weights[0][0])] == (CUBLAS if report["config"] == CUBLAS else tuple(report["config"]))
        x = torch.randn(rows, 4096, device="cuda", dtype=torch.bfloat16)
        ref = x.double() @ weights[0][0].double().t()
        rel = float((few_rows_linear(x, weights[0][0]).double() - ref).norm() / ref.norm())
        assert rel < 1e-2, rel


@needs_fp8_gpu
def test_cuda_engine_with_the_few_rows_kernel_decides_like_cublas():
    from lionfs_ros.engine.quantization import StreamedWeight

    runs = {}
    for kind in ("torch", "auto"):
        runs[kind], fused = _demo_decisions(linear_kernel=kind)
        # (linear_tuning lists only the shapes not tuned before in this process)
        assert fused.linear_kernel == kind and isinstance(fused.head_weight, StreamedWeight) == (kind == "auto")
    same, diff = _compare(runs["auto"], runs["torch"])
    print(f"few-rows kernel vs cuBLAS: {same}/{len(runs['torch'])} decisions equal, max |dP(interval)| {diff:.4f}")
    assert same == len(runs["torch"]) and diff < 0.02, (same, diff)
