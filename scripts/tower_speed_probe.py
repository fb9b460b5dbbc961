"""Where one frame's SigLIP-L/16-384 tower time goes on a GPU, and what could make it faster (issue 14).

A decided frame of ``llama3-8b`` spends ~2.1 ms in the general tower (576 patches, 24 layers): its products run at
~200 TFLOPS of the H200's ~990, far below what the same products reach in a batch of 8 frames. Parts (``--parts``):
- ``profile``: the engine's single-frame tower (``FusedTower``, compiled) as one CUDA graph: replay ms, and the
  profiler's kernels per replay (count, device us, the top ones): how much is products, attention, norms, gaps;
- ``gemm``: each product of a layer at one frame's rows (and the patch embedding), us and TFLOPS: cuBLAS
  (``addmm``, as the tower runs it), inductor's autotuned templates (``max-autotune-no-cudagraphs``), cuBLAS after
  TunableOp's tuning, and row-wise FP8 (``torch._scaled_mm`` on codes; the activations' quantization timed apart);
- ``whole``: the whole tower forward compiled by inductor with ``max-autotune-no-cudagraphs`` (static shapes) and the
  same forward after TunableOp: replay ms and the largest difference from the engine's tower tokens;
- ``attention``: the layers' attention under each SDPA backend (alone, and the whole tower graph);
- ``pdl``: programmatic dependent launch in a CUDA graph: a chain of small Triton kernels, us per kernel, launched
  plainly, with PDL (each waits on the previous grid), and with PDL where the previous kernel triggers early.
Each part's results land in ``--out``/tower_speed.json as it ends. CPU smoke (tiny tower, parts that run there):
``python scripts/tower_speed_probe.py --smoke --device cpu --parts gemm``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tower_bench import SMOKE_TOWERS, TOWERS, build  # noqa: E402

from lionfs_ros.engine.bench.graph_timing import graph_ms  # noqa: E402
from lionfs_ros.engine.fused_tower import FusedTower  # noqa: E402
from lionfs_ros.engine.quantization import quantize_fp8  # noqa: E402

REPLAYS = 50
OPS_PER_GRAPH = 10  # a product repeated in one graph: its us is the graph's over this
CHAIN = 300  # kernels in the PDL chain (about a decided frame's LLM step)
TOP_KERNELS = 14


def tflops(m: int, k: int, n: int, us: float) -> float:
    return 2 * m * k * n / (us * 1e-6) / 1e12


def layer_shapes(tower) -> dict[str, tuple[int, int]]:
    """Each product of a layer (and the patch embedding): (K, N)."""
    c = tower.layers[0][1].shape[1]
    return {"patch": (tower.patch_weight.shape[1], c), "qkv": (c, 3 * c), "out": (c, c),
            "fc1": (c, tower.layers[0][6].shape[0]), "fc2": (tower.layers[0][8].shape[1], c)}


def timed_us(op, device: torch.device) -> float:
    if device.type != "cuda":  # the CPU smoke: wall time
        t0 = time.perf_counter()
        for _ in range(OPS_PER_GRAPH):
            op()
        return (time.perf_counter() - t0) * 1e6 / OPS_PER_GRAPH

    def body():
        for _ in range(OPS_PER_GRAPH):
            op()
    return graph_ms(body, device, REPLAYS, warmup_runs=2, warmup_replays=3) * 1e3 / OPS_PER_GRAPH


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [M, K]`` -> (FP8 codes, per-row float32 scales ``[M, 1]``): the engine's weight quantization, by rows."""
    q = quantize_fp8(x)
    return q.codes, q.scale[:, None]


def gemm(tower, device, dtype, rows: int) -> dict:
    out = {}
    for name, (k, n) in layer_shapes(tower).items():
        x = torch.randn(rows, k, device=device, dtype=dtype)
        w = torch.randn(n, k, device=device, dtype=dtype) / k ** 0.5
        b = torch.randn(n, device=device, dtype=dtype)
        entry = {"shape": [rows, k, n]}
        entry["cublas_us"] = timed_us(lambda: torch.addmm(b, x, w.t()), device)
        try:
            tuned = torch.compile(lambda b, x, w: torch.addmm(b, x, w.t()), mode="max-autotune-no-cudagraphs",
                                  dynamic=False)
            t0 = time.perf_counter()
            ref, got = torch.addmm(b, x, w.t()), tuned(b, x, w)
            entry["autotune_compile_s"] = round(time.perf_counter() - t0, 1)
            entry["autotune_max_abs"] = float((ref.float() - got.float()).abs().max())
            entry["autotune_us"] = timed_us(lambda: tuned(b, x, w), device)
        except Exception as err:  # noqa: BLE001 - a probe reports what failed and goes on
            entry["autotune_error"] = f"{type(err).__name__}: {err}"[:300]
        if device.type == "cuda":
            try:
                torch.cuda.tunable.enable(True)
                torch.cuda.tunable.tuning_enable(True)
                torch.addmm(b, x, w.t())
                torch.cuda.synchronize()
                entry["tunable_us"] = timed_us(lambda: torch.addmm(b, x, w.t()), device)
            except Exception as err:  # noqa: BLE001
                entry["tunable_error"] = f"{type(err).__name__}: {err}"[:300]
            finally:
                torch.cuda.tunable.enable(False)
            try:
                xq, xs = quantize_rows(x)
                wq, ws = quantize_rows(w)
                fp8 = lambda: torch._scaled_mm(xq, wq.t(), scale_a=xs, scale_b=ws.t(), bias=b,  # noqa: E731
                                               out_dtype=dtype)
                ref = torch.addmm(b, x, w.t()).float()
                entry["fp8_rel_err"] = float((fp8().float() - ref).norm() / ref.norm())
                entry["fp8_us"] = timed_us(fp8, device)
                quant = torch.compile(quantize_rows, dynamic=False)
                entry["fp8_quant_us"] = timed_us(lambda: quant(x), device)
            except Exception as err:  # noqa: BLE001
                entry["fp8_error"] = f"{type(err).__name__}: {err}"[:300]
        for key in [key for key in entry if key.endswith("_us") and "quant" not in key]:
            entry[key.replace("_us", "_tflops")] = round(tflops(rows, k, n, entry[key]), 1)
        out[name] = entry
        print(name, json.dumps(entry), flush=True)
    return out


def profile(tower, pixels, device) -> dict:
    out = {"replay_ms": graph_ms(lambda: tower(pixels), device, REPLAYS, warmup_runs=2, warmup_replays=3)}
    stream = torch.cuda.Stream(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        tower(pixels)
    replays = 5
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            graph.replay()
        torch.cuda.synchronize()
    rows = []
    for evt in prof.key_averages():
        us = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0)
        if us:
            rows.append({"name": evt.key[:140], "us": us / replays, "calls": evt.count / replays})
    rows.sort(key=lambda r: -r["us"])
    out.update(kernels=sum(r["calls"] for r in rows), device_us=sum(r["us"] for r in rows), top=rows[:TOP_KERNELS])
    print("profile", json.dumps({k: v for k, v in out.items() if k != "top"}), flush=True)
    for r in rows[:TOP_KERNELS]:
        print(f"  {r['us']:8.1f} us x{r['calls']:5.1f} {r['name'][:100]}", flush=True)
    return out


def whole(encoder, engine_tower, pixels, device) -> dict:
    ref = engine_tower(pixels).float()
    out = {"engine_ms": graph_ms(lambda: engine_tower(pixels), device, REPLAYS, warmup_runs=2, warmup_replays=3)}
    plain = FusedTower(encoder, compile=False)
    try:
        t0 = time.perf_counter()
        tuned = torch.compile(plain.__call__, mode="max-autotune-no-cudagraphs", dynamic=False)
        got = tuned(pixels).float()
        out["autotune_compile_s"] = round(time.perf_counter() - t0, 1)
        out["autotune_max_abs"] = float((got - ref).abs().max())
        out["autotune_ms"] = graph_ms(lambda: tuned(pixels), device, REPLAYS, warmup_runs=1, warmup_replays=3)
    except Exception as err:  # noqa: BLE001
        out["autotune_error"] = f"{type(err).__name__}: {err}"[:400]
    print("whole", json.dumps(out), flush=True)
    try:
        torch.cuda.tunable.enable(True)
        torch.cuda.tunable.tuning_enable(True)
        got = engine_tower(pixels).float()
        torch.cuda.synchronize()
        out["tunable_max_abs"] = float((got - ref).abs().max())
        out["tunable_ms"] = graph_ms(lambda: engine_tower(pixels), device, REPLAYS, warmup_runs=2, warmup_replays=3)
    except Exception as err:  # noqa: BLE001
        out["tunable_error"] = f"{type(err).__name__}: {err}"[:400]
    finally:
        torch.cuda.tunable.enable(False)
    print("whole", json.dumps(out), flush=True)
    return out


def attention(encoder, engine_tower, pixels, device) -> dict:
    """The layers' attention alone (q/k/v as the tower's strided views of one product) and the whole tower graph,
    under each SDPA backend: us, ms, and the largest difference from the default's tokens."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows, heads, dim = pixels.shape[0] * (encoder.image_size // engine_tower.patch) ** 2, engine_tower.num_heads, \
        engine_tower.head_dim
    qkv = torch.randn(1, rows, 3, heads, dim, device=device, dtype=pixels.dtype)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    ref = engine_tower(pixels).float()
    out = {"default_tower_ms": graph_ms(lambda: engine_tower(pixels), device, REPLAYS, warmup_runs=2,
                                        warmup_replays=3)}
    for name in ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION"):
        backend = getattr(SDPBackend, name)
        try:
            with sdpa_kernel([backend]):
                out[f"{name}_us"] = timed_us(lambda: F.scaled_dot_product_attention(q, k, v), device)
                got = engine_tower(pixels).float()
                out[f"{name}_tower_max_abs"] = float((got - ref).abs().max())
                out[f"{name}_tower_ms"] = graph_ms(lambda: engine_tower(pixels), device, REPLAYS, warmup_runs=2,
                                                   warmup_replays=3)
        except Exception as err:  # noqa: BLE001
            out[f"{name}_error"] = f"{type(err).__name__}: {err}"[:300]
    contiguous = [t.contiguous() for t in (q, k, v)]  # [B, H, L, D] each, dense
    out["CUDNN_contiguous_inputs_us"] = timed_us(lambda: F.scaled_dot_product_attention(*contiguous), device)
    for name, inputs in (("strided", (q, k, v)), ("contiguous", contiguous)):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            F.scaled_dot_product_attention(*inputs)
            torch.cuda.synchronize()
        out[f"{name}_kernels"] = [e.name[:80] for e in prof.events() if str(e.device_type).endswith("CUDA")]
    print("attention", json.dumps(out), flush=True)
    return out


def pdl(device) -> dict:
    import triton
    import triton.language as tl

    out = {"triton": triton.__version__}
    cuda_extra = tl.extra.cuda
    out["gdc"] = hasattr(cuda_extra, "gdc_wait") and hasattr(cuda_extra, "gdc_launch_dependents")
    if not out["gdc"]:
        return out

    @triton.jit
    def add_one(x_ptr, y_ptr, n, BLOCK: tl.constexpr, WAIT: tl.constexpr, TRIGGER: tl.constexpr):
        if WAIT:
            cuda_extra.gdc_wait()
        if TRIGGER:
            cuda_extra.gdc_launch_dependents()
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + offs, mask=offs < n)
        tl.store(y_ptr + offs, x + 1, mask=offs < n)

    for n in (132 * 256, 132 * 4096):
        a, b = torch.zeros(n, device=device), torch.zeros(n, device=device)
        block = 256 if n < 132 * 1024 else 4096
        grid = (triton.cdiv(n, block),)
        for name, wait, trigger, launch_pdl in (("plain", False, False, False), ("pdl_wait", True, False, True),
                                                ("pdl_trigger", True, True, True)):
            def chain(wait=wait, trigger=trigger, launch_pdl=launch_pdl):
                for i in range(CHAIN):
                    src, dst = (a, b) if i % 2 == 0 else (b, a)
                    add_one[grid](src, dst, n, BLOCK=block, WAIT=wait, TRIGGER=trigger, launch_pdl=launch_pdl)
            try:
                a.zero_()
                ms = graph_ms(chain, device, REPLAYS, warmup_runs=1, warmup_replays=2)
                a.zero_()
                b.zero_()
                chain()
                torch.cuda.synchronize()
                out[f"n{n}_{name}_us_per_kernel"] = ms * 1e3 / CHAIN
                out[f"n{n}_{name}_correct"] = bool(a[0].item() == CHAIN)  # CHAIN even: the last kernel wrote a
            except Exception as err:  # noqa: BLE001
                out[f"n{n}_{name}_error"] = f"{type(err).__name__}: {err}"[:300]
    inductor = torch._inductor.config.triton
    out["inductor_pdl_option"] = [k for k in dir(inductor) if "pdl" in k.lower()]
    print("pdl", json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="a tiny tower (a CPU check of the script)")
    parser.add_argument("--parts", default="profile,gemm,whole,pdl")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    config, global_token = (SMOKE_TOWERS["siglip_tiny"] if args.smoke else TOWERS["siglip_l16_384"])
    encoder = build(config, global_token, device, dtype)
    tower = FusedTower(encoder, compile=device.type == "cuda")
    pixels = torch.randn(1, 3, encoder.image_size, encoder.image_size, device=device, dtype=dtype)
    rows = (encoder.image_size // tower.patch) ** 2
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "dtype": str(dtype), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    for part in args.parts.split(","):
        t0 = time.perf_counter()
        with torch.no_grad():
            if part == "gemm":
                result[part] = gemm(tower, device, dtype, rows)
            elif part == "profile":
                result[part] = profile(tower, pixels, device)
            elif part == "whole":
                result[part] = whole(encoder, tower, pixels, device)
            elif part == "attention":
                result[part] = attention(encoder, tower, pixels, device)
            elif part == "pdl":
                result[part] = pdl(device)
            else:
                raise SystemExit(f"unknown part {part!r}")
        result[part]["seconds"] = round(time.perf_counter() - t0, 1)
        (args.out / "tower_speed.json").write_text(json.dumps(result, indent=1))
        print(f"== {part}: {result[part]['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
