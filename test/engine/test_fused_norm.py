"""The few-rows kernel with its neighbours folded in (``fused_few_rows_linear``): the residual add after a product
(with the next RMSNorm's statistics) and that RMSNorm on the way into the next product, against the unfused torch
arithmetic (``decoder_ops.add_rms_norm`` and a plain product); and the static decoder deciding the same with the
fold and without.

Needs Triton (CI has none: skipped there). Without a GPU the kernel runs on CPU tensors through Triton's
interpreter (``TRITON_INTERPRET=1``, set by ``test/conftest.py``) with fp16 activations (the interpreter's ``tl.dot``
has no bf16, and its casts to bf16 truncate); on a GPU of compute capability >= 8.9, bf16 and FP8 codes on CUDA tensors."""
import pytest
import torch

from lionfs_ros.engine.quantization import dequantize_fp8, fp8_problem, quantize_fp8
from lionfs_ros.engine.decoder_ops import add_rms_norm, rms_norm

triton = pytest.importorskip("triton")
from lionfs_ros.engine.kernels.few_rows_linear import (  # noqa: E402
    CUBLAS, FP16_OPERANDS, fused_few_rows_linear, few_rows_linear, tile_counters)

CUDA = torch.cuda.is_available() and fp8_problem(torch.device("cuda")) is None
DEVICE = "cuda" if CUDA else "cpu"
EPS = 1e-5
ROUNDING = 2e-2  # relative: a bf16/fp16 rounding or two apart (the statistics are summed in another order)
CONFIGS = [
    (1, (1, 16, 128, 4, 4, 3, 0)),  # a generated token on the CUDA cores, 3 slices
    (1, (16, 16, 128, 4, 4, 1, 0)),  # a generated token on the tensor cores, no split
    (11, (16, 16, 128, 4, 4, 4, 0)),  # a decided frame, 4 slices
    (11, (16, 32, 256, 4, 4, 1, 0)),  # a decided frame, no split, a partial column tile
]


def _dtype(config):
    return torch.bfloat16 if CUDA else torch.float16  # the interpreter casts float32 to bf16 by truncation


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("fp8", [False, True])
@pytest.mark.parametrize("m,config", CONFIGS)
def test_residual_add_and_statistics_equal_the_unfused_add(m, config, fp8):
    dtype = _dtype(config)
    n, k = 80, 640  # 80: a partial tile at 32 columns
    gen = torch.Generator().manual_seed(m + n)
    w = (torch.randn(n, k, generator=gen) / 8).to(DEVICE, dtype)
    x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
    residual = (torch.randn(m, n, generator=gen) * 4).to(DEVICE, dtype)
    codes, scale = (quantize_fp8(w.float()).codes, quantize_fp8(w.float()).scale) if fp8 else (w, None)
    out, sums = fused_few_rows_linear(x, codes, scale, residual=residual, config=config)
    again, sums_again = fused_few_rows_linear(x, codes, scale, residual=residual, config=config)
    assert torch.equal(out, again) and torch.equal(sums, sums_again)  # deterministic
    assert not tile_counters(1, x.device).any()
    plain = few_rows_linear(x, codes, scale, config=config)
    assert torch.equal(out, residual + plain)  # HF: the product rounded, then the add rounded
    assert sums.shape == (-(-n // config[1]), m) and sums.dtype == torch.float32
    want = out.float().pow(2).sum(-1)  # [M]
    assert torch.allclose(sums.sum(0), want, rtol=1e-5)


@pytest.mark.parametrize("fp8", [False, True])
@pytest.mark.parametrize("m,config", CONFIGS)
def test_input_norm_from_the_statistics_equals_the_norm_then_the_product(m, config, fp8):
    dtype = _dtype(config)
    n, k = 48, 640
    gen = torch.Generator().manual_seed(7 * m)
    w = (torch.randn(n, k, generator=gen) / 8).to(DEVICE, dtype)
    g = (1 + torch.randn(k, generator=gen) / 10).to(DEVICE, dtype)
    stream = (torch.randn(m, k, generator=gen) * 3).to(DEVICE, dtype)
    # the statistics as a producer's tiles hand them over: [T, M] partial sums over column slices
    tiles = 5
    sums = torch.stack([part.float().pow(2).sum(-1) for part in stream.tensor_split(tiles, dim=1)]).contiguous()
    codes, scale = (quantize_fp8(w.float()).codes, quantize_fp8(w.float()).scale) if fp8 else (w, None)
    out, none = fused_few_rows_linear(stream, codes, scale, norm=(g, sums, EPS), config=config)
    assert none is None
    want = few_rows_linear(rms_norm(stream, g, EPS), codes, scale, config=config)
    assert out.shape == want.shape and out.dtype == want.dtype
    assert _rel(out, want) < ROUNDING


def test_a_producer_feeds_its_consumer_like_add_rms_norm_then_the_product():
    """o-projection with the residual add, then gate/up with the norm: what the decoder does between sublayers."""
    config = (16, 16, 128, 4, 4, 2, 0)
    dtype = _dtype(config)
    m, d, inner = 11, 256, 96
    gen = torch.Generator().manual_seed(3)
    w_o = (torch.randn(d, d, generator=gen) / 16).to(DEVICE, dtype)
    w_up = (torch.randn(inner, d, generator=gen) / 16).to(DEVICE, dtype)
    g = (1 + torch.randn(d, generator=gen) / 10).to(DEVICE, dtype)
    attn = torch.randn(m, d, generator=gen).to(DEVICE, dtype)
    residual = (torch.randn(m, d, generator=gen) * 2).to(DEVICE, dtype)
    stream, sums = fused_few_rows_linear(attn, w_o, residual=residual, config=config)
    up, _ = fused_few_rows_linear(stream, w_up, norm=(g, sums, EPS), config=config)
    h, summed = add_rms_norm(few_rows_linear(attn, w_o, config=config), residual, g, EPS)
    assert torch.equal(stream, summed)
    assert _rel(up, few_rows_linear(h, w_up, config=config)) < ROUNDING


def test_bad_operands_are_refused_with_the_reason():
    config = (16, 16, 128, 4, 4, 1, 0)
    dtype = _dtype(config)
    x = torch.randn(2, 64).to(DEVICE, dtype)
    w = torch.randn(32, 64).to(DEVICE, dtype)
    with pytest.raises(ValueError, match="contiguous"):
        fused_few_rows_linear(x, w, residual=torch.zeros(2, 16, device=DEVICE, dtype=dtype), config=config)
    with pytest.raises(ValueError, match="float32"):
        fused_few_rows_linear(x, w, norm=(torch.ones(64, device=DEVICE, dtype=dtype),
                                          torch.zeros(3, 2, device=DEVICE, dtype=dtype), EPS), config=config)
    with pytest.raises(ValueError, match="cuBLAS"):
        fused_few_rows_linear(x, w, config=CUBLAS)


@pytest.mark.parametrize("magnitude", [3.0, pytest.param(3e5, marks=pytest.mark.skipif(
    not CUDA, reason="the interpreter's activations are fp16: a stream past its range cannot be given"))])
@pytest.mark.parametrize("config", [(16, 16, 128, 4, 4, 4, 0), (16, 32, 256, 4, 4, 1, 0)])
def test_fp16_operands_give_the_same_rows_as_the_model_dtype_at_any_magnitude(config, magnitude):
    """``FP16_OPERANDS`` with the rows' rstd known (``norm=(None, ...)``): each row is scaled by a power of two before
    its cast to fp16, so a stream far past fp16's range (3e5: the residual stream of a model with massive
    activations) still gives the model dtype's product, bit for bit (the same exact products, summed in the same
    order), split-K or not. (On the CPU the interpreter's fp16 activations are cast as they are: the bit-for-bit
    check of the path.)"""
    dtype = _dtype(config)
    m, n, k = 11, 48, 640
    gen = torch.Generator().manual_seed(int(magnitude))
    folded = quantize_fp8((torch.randn(n, k, generator=gen) / 8).to(DEVICE))
    stream = (torch.randn(m, k, generator=gen) * magnitude).to(torch.bfloat16).to(DEVICE, dtype)
    sums = torch.stack([part.float().pow(2).sum(-1) for part in stream.tensor_split(5, dim=1)]).contiguous()
    plain, _ = fused_few_rows_linear(stream, folded.codes, folded.scale, norm=(None, sums, EPS), config=config)
    fp16, _ = fused_few_rows_linear(stream, folded.codes, folded.scale, norm=(None, sums, EPS),
                                    config=(*config[:6], config[6] | FP16_OPERANDS))
    assert torch.isfinite(fp16).all()
    assert torch.equal(fp16, plain)


@pytest.mark.skipif(CUDA, reason="the CPU form of the check: on a GPU the CUDA engine tests run the fold by default")
def test_static_decoder_decides_the_same_with_the_norms_folded(fused_model, monkeypatch):
    """LION-FS (routed and plain layers) on the static backend with its products in the few-rows kernel (here through
    the interpreter, one fixed tile per row bucket): folding the adds and norms into the products decides as the add +
    norm between them, and the fold did run (o, down with the add before a routed layer and in the answer's token
    steps; q/k/v, gate/up, head with the norm in the token steps)."""
    from engine_parts import engine_config, stream_frames
    from lionfs_ros.engine import StreamEngine, static_decoder
    from lionfs_ros.engine.backends import StaticBackend
    from lionfs_ros.engine.kernels import few_rows_linear as kernel
    from lionfs_ros.engine.quantization import StreamedWeight, stream_layers

    monkeypatch.setattr(static_decoder, "attention_problem", lambda device: None)
    monkeypatch.setattr(static_decoder, "folds", lambda x, w, norm=False: isinstance(w, StreamedWeight)
                        and x.reshape(-1, x.shape[-1]).shape[0] <= (1 if norm else kernel.SMALL_M))
    folded = []
    fused_linear = static_decoder.fused_linear
    monkeypatch.setattr(static_decoder, "fused_linear", lambda *a, **kw: folded.append(
        ("add" if kw.get("residual") is not None else "norm")) or fused_linear(*a, **kw))
    model = fused_model
    frames = stream_frames(6, seed=5)
    results = {}
    for fold in (False, True):
        fused = static_decoder.FusedDecoder(model.llm, attention="triton", dropping=model.token_dropping,
                                            fold_norms=fold)
        stream_layers(fused.layers)
        fused.head_weight = StreamedWeight(fused.head_weight)
        for w in [getattr(fl, name).weight for fl in fused.layers for name in
                  ("qkv_weight", "o_weight", "gate_up_weight", "down_weight")] + [fused.head_weight.weight]:
            monkeypatch.setitem(kernel.TUNED, kernel.tuned_key(1, w), (1, 16, 128, 4, 3, 2, 0))
            monkeypatch.setitem(kernel.TUNED, kernel.tuned_key(kernel.SMALL_M, w), (16, 16, 128, 4, 3, 2, 0))
        cfg = engine_config(backend="static", compile=False, threshold=0.7, attention="triton", fold_norms=fold)
        engine = StreamEngine(model, cfg, backend=StaticBackend(model, cfg, fused=fused))
        engine.ask("what is this?", 0.0, query_id="q")  # its answer: one-token steps (the norm folds there)
        decisions = [engine.process_frame(frames[k], k * 0.5) for k in range(6)]
        engine.flush()
        results[fold] = ([d for d in decisions if d is not None], engine.stats())
    (plain, plain_stats), (folded_run, folded_stats) = results[False], results[True]
    assert len(plain) == len(folded_run) == 6 and plain_stats["answers"] == folded_stats["answers"] >= 1
    assert folded.count("add") > 0 and folded.count("norm") > 0
    assert [(d.respond, d.next_token) for d in plain] == [(d.respond, d.next_token) for d in folded_run]
    torch.testing.assert_close(torch.tensor([d.p_interval for d in folded_run]),
                               torch.tensor([d.p_interval for d in plain]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("fp8", [False, True])
@pytest.mark.parametrize("m,config", CONFIGS + [(11, (16, 32, 128, 4, 4, 4, 2)), (11, (16, 16, 128, 4, 4, 1, 2))])
def test_norm_weight_in_the_matrix_scales_each_output_row_by_the_streams_rstd(m, config, fp8):
    """``norm=(None, sums, eps)``: the RMSNorm's weight was multiplied into the matrix's columns (``W diag(g)``, as the
    FP8 codes are made with ``fold_norms``); the kernel multiplies the raw stream and scales each output row by its
    ``rstd``: the norm then the product, but for the rounding of the normalized rows (tensor-core and one-row paths,
    the operands swapped or not)."""
    dtype = _dtype(config)
    n, k = 48, 640
    gen = torch.Generator().manual_seed(11 * m)
    w = torch.randn(n, k, generator=gen) / 8
    g = 1 + torch.randn(k, generator=gen) / 4
    stream = (torch.randn(m, k, generator=gen) * 3).to(DEVICE, dtype)
    sums = torch.stack([part.float().pow(2).sum(-1) for part in stream.tensor_split(5, dim=1)]).contiguous()
    if fp8:
        folded = quantize_fp8(w.to(DEVICE), g.to(DEVICE))
        codes, scale, matrix = folded.codes, folded.scale, dequantize_fp8(folded, torch.float64)
    else:
        codes, scale = (w * g).to(DEVICE, dtype), None
        matrix = codes.double()
    out, none = fused_few_rows_linear(stream, codes, scale, norm=(None, sums, EPS), config=config)
    assert none is None and out.shape == (m, n) and out.dtype == dtype
    x = stream.double()
    want = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)) @ matrix.t()
    assert _rel(out, want) < ROUNDING


@pytest.mark.skipif(CUDA, reason="the CPU form of the check: on a GPU the CUDA engine tests run the fold by default")
def test_fp8_decoder_with_the_norms_in_the_codes_folds_them_like_the_separate_norm(fused_model, monkeypatch):
    """LION-FS (routed and plain layers) with weight-only FP8 codes of ``W diag(g)``: where the products fold the adds
    and scale their rows by the norm's statistics (here through the interpreter, tensor-core rows included), each
    feed's logits equal the unfused path's (the add + norm without a weight, then the reference product)."""
    import copy

    from lionfs_ros.engine import backends, static_decoder
    from lionfs_ros.engine.backends import StaticBackend
    from lionfs_ros.engine.kernels import few_rows_linear as kernel
    from lionfs_ros.engine.quantization import Fp8Weight
    from engine_parts import engine_config
    from test_static_backend import feeds

    model = copy.deepcopy(fused_model)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a fresh model's norms are ones: folding those would change nothing
        for layer in model.llm.get_decoder().layers:
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight.data = 1 + torch.randn(norm.weight.shape, generator=gen).to(norm.weight) / 4
    fused = static_decoder.FusedDecoder(model.llm, attention="split", dropping=model.token_dropping, weights="fp8")
    assert isinstance(fused.head_weight, Fp8Weight) and fused.head_weight.norm_in_codes  # fp8_head, the final norm in it
    for w in [getattr(fl, name).codes for fl in fused.layers for name in
              ("qkv_weight", "o_weight", "gate_up_weight", "down_weight")] + [fused.head_weight.codes]:
        monkeypatch.setitem(kernel.TUNED, kernel.tuned_key(1, w), (1, 16, 128, 4, 3, 2, 0))
        monkeypatch.setitem(kernel.TUNED, kernel.tuned_key(kernel.SMALL_M, w), (16, 16, 128, 4, 3, 2, 2))
    cfg = engine_config(backend="static", attention="split", weights="fp8")
    monkeypatch.setattr(backends, "fp8_problem", lambda device: None)  # the engine refuses FP8 off the GPU
    scaled = []
    fused_linear = static_decoder.fused_linear
    monkeypatch.setattr(static_decoder, "fused_linear", lambda *a, **kw: scaled.append(
        kw.get("norm") is not None and kw["norm"][0] is None) or fused_linear(*a, **kw))
    logits = {}
    for fold in (True, False):
        monkeypatch.setattr(static_decoder, "folds", lambda x, w, norm=False, fold=fold: fold and isinstance(
            w, Fp8Weight) and x.reshape(-1, x.shape[-1]).shape[0] <= kernel.SMALL_M)
        state = StaticBackend(model, cfg, use_graphs=False, fused=fused).main_state()
        logits[fold] = [state.feed(ids, embeds) for ids, embeds in feeds(model)]
    assert any(scaled) and fused.layers[0].qkv_weight.norm_in_codes
    for a, b in zip(logits[True], logits[False]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fp8", [False, True])
@pytest.mark.parametrize("m,config", CONFIGS + [(11, (16, 32, 128, 4, 4, 4, 2))])
def test_gate_pairs_give_the_silu_gate_of_the_plain_product(m, config, fp8):
    """``gate=True``: the weight's rows are (gate, up) pairs; the kernel stores ``silu(gate) * up`` (the compiled
    gate's arithmetic) instead of the pairs: equal to the plain product then ``quantization.gate_pairs``."""
    from lionfs_ros.engine.quantization import gate_pairs

    dtype = _dtype(config)
    n, k = 96, 640  # 48 pairs: a partial tile of pairs at 32 columns
    gen = torch.Generator().manual_seed(5 * m)
    w = (torch.randn(n, k, generator=gen) / 8).to(DEVICE, dtype)
    x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
    codes, scale = (quantize_fp8(w.float()).codes, quantize_fp8(w.float()).scale) if fp8 else (w, None)
    out = few_rows_linear(x, codes, scale, config=config, gate=True)
    assert out.shape == (m, n // 2) and out.dtype == dtype
    want = gate_pairs(few_rows_linear(x, codes, scale, config=config))
    torch.testing.assert_close(out, want, atol=2e-3, rtol=2e-3)
    with pytest.raises(ValueError, match="pairs"):
        few_rows_linear(x, codes[:-1], None if scale is None else scale[:-1], config=config, gate=True)
