"""The vision towers' Triton attention (``engine/kernels/tower_attention.py``) against PyTorch's SDPA on this GPU.

Shapes: SigLIP-L/16-384 (576 tokens, 16 heads of 64) and the CLIP-B/16-224 ego tower (197 tokens, 12 heads of 64),
bf16, from the bench towers' configs (``scripts/tower_bench.py``). Parts (``--parts``, in this order):
- ``correctness``: every ``TILE_CANDIDATES`` entry and the default tiles at one frame (B=1), max abs difference
  from a float64 reference and from SDPA (SDPA's own error from float64 next to it);
- ``timing``: us per call at batches 1, 4, 8: each candidate, the default tiles, and SDPA (its default choice, then
  cuDNN, flash and efficient forced by ``sdpa_kernel``), ``CALLS`` calls on distinct q/k/v buffers captured in one
  CUDA graph (a tower's layers: memset nodes and the gaps after them included, as in the tower's graph);
- ``tower``: the fused tower (random weights, ``torch.compile`` on) as one CUDA graph with attention 'triton' and
  'sdpa': ms per frame at batches 1 and 8, and the tokens' max abs difference between the two and from a float32 copy.

    PYTHONPATH=. python3 scripts/tower_attention_bench.py --out DIR                        # one GPU, < 150 s
    TRITON_INTERPRET=1 PYTHONPATH=. python3 scripts/tower_attention_bench.py --smoke --out DIR  # CPU, tiny towers

Writes ``DIR/tower_attention.json`` as each part ends. The smoke run lets the fused tower pick the kernel on CPU
tensors (Triton's interpreter runs it), as ``test/engine/test_tower_attention.py`` does; it times wall clock.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tower_bench import SMOKE_TOWERS, TOWERS, build  # noqa: E402

from lionfs_ros.engine import fused_tower  # noqa: E402
from lionfs_ros.engine.bench.graph_timing import graph_ms  # noqa: E402
from lionfs_ros.engine.fused_tower import FusedTower  # noqa: E402
from lionfs_ros.engine.graphed_frame import falling_back  # noqa: E402
from lionfs_ros.engine.kernels.tower_attention import TILE_CANDIDATES, default_tiles, tower_attention  # noqa: E402

CALLS = 24  # attention calls per graph: SigLIP-L's layers
BATCHES, TOWER_BATCHES = (1, 4, 8), (1, 8)
REPLAYS = 30
SDPA_BACKENDS = ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION")
BF16_OK = 2e-2  # a candidate's max abs error from float64 (bf16 outputs of magnitude < 4: a few roundings)


def shape(config: dict) -> tuple[int, int, int]:
    """(L, H, D) of a tower config's attention: the patches, plus CLIP's class token."""
    length = (config["image_size"] // config["patch_size"]) ** 2 + int(config["model_type"] == "clip_vision_model")
    heads = config["num_attention_heads"]
    return length, heads, config["hidden_size"] // heads


def sdpa(qkv: torch.Tensor, scale: float) -> torch.Tensor:
    """SDPA as the fused tower calls it (strided views of the product) -> ``[B, L, H, D]``."""
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, L, D] each
    return F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2)


def reference(qkv: torch.Tensor, scale: float) -> torch.Tensor:
    q, k, v = qkv.double().permute(2, 0, 3, 1, 4).unbind(0)
    return (torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v).transpose(1, 2)


def products(b: int, length: int, heads: int, dim: int, n: int, device, dtype) -> list[torch.Tensor]:
    """``n`` q/k/v products ``[B*L, 3*H*D]`` viewed as ``[B, L, 3, H, D]``."""
    return [torch.randn(b * length, 3 * heads * dim, device=device, dtype=dtype).view(b, length, 3, heads, dim)
            for _ in range(n)]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def timed_ms(body, device: torch.device, smoke: bool) -> float:
    """ms of ``body``: its median replay as one CUDA graph on the GPU, one wall-clock run in the smoke run."""
    if smoke:
        t0 = time.perf_counter()
        body()
        return (time.perf_counter() - t0) * 1e3
    return graph_ms(body, device, REPLAYS, warmup_runs=2, warmup_replays=3)


def error(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"[:300]


@torch.no_grad()
def correctness(dims, device, dtype) -> dict:
    length, heads, dim = dims
    scale = dim ** -0.5
    qkv = products(1, length, heads, dim, 1, device, dtype)[0]
    exact, theirs = reference(qkv, scale), sdpa(qkv, scale)
    out = {"sdpa_max_abs_vs_float64": max_diff(theirs, exact), "candidates": []}
    for tiles in (*TILE_CANDIDATES, None):
        row = {"tiles": "default" if tiles is None else tiles.__dict__}
        try:
            got = tower_attention(qkv, scale, tiles)
            row.update(max_abs_vs_float64=max_diff(got, exact), max_abs_vs_sdpa=max_diff(got, theirs))
            row["ok"] = row["max_abs_vs_float64"] <= max(BF16_OK, 2 * out["sdpa_max_abs_vs_float64"])
        except Exception as err:  # noqa: BLE001 - a bench reports what failed and goes on
            row.update(error=error(err), ok=False)
        out["candidates"].append(row)
    out["default_tiles"] = default_tiles(length).__dict__
    out["all_ok"] = all(c["ok"] for c in out["candidates"])
    return out


@torch.no_grad()
def timing(dims, device, dtype, smoke: bool) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    length, heads, dim = dims
    scale = dim ** -0.5
    calls = 2 if smoke else CALLS
    out = {}
    for b in BATCHES[:2] if smoke else BATCHES:
        inputs = products(b, length, heads, dim, calls, device, dtype)

        def run(op):
            return lambda: [op(qkv) for qkv in inputs]
        row = {"default_tiles": default_tiles(length).__dict__, "us_per_call": {}}
        us = row["us_per_call"]
        for tiles in (*TILE_CANDIDATES, None):
            name = "triton_default" if tiles is None else "triton_{block_m}x{block_n}_w{warps}_s{stages}".format(
                **tiles.__dict__)
            kernel = run(lambda qkv, t=tiles: tower_attention(qkv, scale, t))
            try:
                us[name] = 1e3 * timed_ms(kernel, device, smoke) / calls
            except Exception as err:  # noqa: BLE001
                us[name] = error(err)
        us["sdpa_default"] = 1e3 * timed_ms(run(lambda qkv: sdpa(qkv, scale)), device, smoke) / calls
        for backend in SDPA_BACKENDS:
            try:
                with sdpa_kernel([getattr(SDPBackend, backend)]):
                    us[f"sdpa_{backend}"] = 1e3 * timed_ms(run(lambda qkv: sdpa(qkv, scale)), device, smoke) / calls
            except Exception as err:  # noqa: BLE001
                us[f"sdpa_{backend}"] = error(err)
        numbers = {k: v for k, v in us.items() if isinstance(v, float)}
        kernels = {k: v for k, v in numbers.items() if k.startswith("triton_") and k != "triton_default"}
        row["fastest_triton"] = min(kernels, key=kernels.get) if kernels else None
        row["fastest"] = min(numbers, key=numbers.get)
        out[b] = row
        print(f"timing L={length} B={b}", json.dumps(row), flush=True)
    return out


@torch.no_grad()
def tower(name: str, config: dict, global_token: str, device, dtype, smoke: bool) -> dict:
    enc = build(config, global_token, device, dtype)
    exact = FusedTower(copy.deepcopy(enc).float(), attention="sdpa")  # float32 copy of the weights
    forward = FusedTower(enc, compile=not smoke, attention="triton")
    out = {"compiled": forward.compiled, "attention_run": forward.attention_run,
           "attention_fallback": forward.attention_fallback, "batches": {}}
    batches = TOWER_BATCHES[:1] if smoke else TOWER_BATCHES
    pixels = {b: torch.randn(b, 3, enc.image_size, enc.image_size, device=device, dtype=dtype) for b in batches}
    tokens = {b: {} for b in batches}
    for attention in ("triton", "sdpa"):
        if attention == "sdpa":
            forward.use_sdpa("the bench's SDPA run")  # the same tower: compiled once
        for b in batches:
            row = out["batches"].setdefault(b, {})
            try:
                tokens[b][attention] = falling_back(forward, lambda: forward(pixels[b]))  # compiles at the first
                row[f"{attention}_ran"] = forward.attention_run  # 'sdpa' where the kernel failed
                row[f"{attention}_ms_per_frame"] = timed_ms(lambda: forward(pixels[b]), device, smoke) / b
            except Exception as err:  # noqa: BLE001
                row[f"{attention}_error"] = error(err)
            if attention == "triton":
                row["triton_fallback"] = forward.attention_fallback
    for b in batches:
        row = out["batches"][b]
        if len(tokens[b]) == 2:
            truth = exact(pixels[b].float())
            row["tokens_max_abs_triton_vs_sdpa"] = max_diff(tokens[b]["triton"], tokens[b]["sdpa"])
            row.update({f"tokens_max_abs_{k}_vs_fp32": max_diff(t, truth) for k, t in tokens[b].items()})
            row["tokens_max_abs"] = float(truth.abs().max())
        print(f"tower {name} B={b}", json.dumps(row), flush=True)
    out["compile_fallback"] = forward.compile_fallback
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, Triton's interpreter, tiny towers")
    parser.add_argument("--parts", default="correctness,timing,tower")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    if args.smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            raise SystemExit("--smoke runs the kernel through Triton's interpreter: set TRITON_INTERPRET=1")
        fused_tower.tower_attention_problem = lambda device: None  # the fused tower may pick it on CPU tensors
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    towers = SMOKE_TOWERS if args.smoke else TOWERS
    import triton

    result = {"device": "cpu" if args.smoke else torch.cuda.get_device_name(device), "torch": torch.__version__,
              "triton": triton.__version__, "dtype": str(dtype), "calls_per_graph": CALLS, "replays": REPLAYS}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "tower_attention.json"
    started = time.perf_counter()
    for part in args.parts.split(","):
        t0 = time.perf_counter()
        for name, (config, global_token) in towers.items():
            dims = shape(config)
            if part == "correctness":
                value = correctness(dims, device, dtype)
            elif part == "timing":
                value = timing(dims, device, dtype, args.smoke)
            elif part == "tower":
                value = tower(name, config, global_token, device, dtype, args.smoke)
            else:
                raise SystemExit(f"unknown part {part!r}")
            value["shape_L_H_D"] = dims
            result.setdefault(part, {})[name] = value
            path.write_text(json.dumps(result, indent=1))
            if part == "correctness":
                print(f"correctness {name}", json.dumps(value), flush=True)
        print(f"== {part}: {time.perf_counter() - t0:.1f} s", flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    path.write_text(json.dumps(result, indent=1))
    print(f"all candidates correct: {all(v['all_ok'] for v in result.get('correctness', {}).values())}; "
          f"{result['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
