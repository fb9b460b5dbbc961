"""An FP8 product at a generated token's one row or a decided frame's 11: the engine kernel's tiles swept wide (issue
14, a probe).

``--rows 1`` (default): the engine's few-rows kernel (``engine/kernels/few_rows_linear.py``) sums its one-row path over ``k`` at every step
into a ``[BLOCK_N]`` accumulator, so ``BLOCK_K`` can be wide and a program's loads are in flight together
(pipelined by ``num_stages``). This probe times, on the Llama-3-8B FP8 shapes at one row, the kernel as the engine's
tuning picks it against a wide grid of one-row tiles (``BLOCK_N`` x ``BLOCK_K`` x stages x split, with the bit-move
upcast; the best again with Triton's conversion); each candidate is checked against the float64 product.
``docs/benchmarks/one-row-fp8-probe-h200.json`` is this probe's first form (main f37f156), which timed the same
accumulator as a kernel of its own before it became the engine's one-row path (then named
``one_row_fp8_probe.py``).

``--rows 11``: the tensor-core path's tiles (16-row blocks) over ``BLOCK_N`` x ``BLOCK_K`` x stages x split x flags
(the bit-move upcast or Triton's conversion, the operands in order or swapped), against the engine's tuning at 11
rows; the same check against float64. ``--wide``: narrower column tiles, steps up to 1,024 and up to 8 slices.

    PYTHONPATH=. python3 scripts/fp8_tile_probe.py --out $OUT [--rows 11]
    PYTHONPATH=. python3 scripts/fp8_tile_probe.py --smoke --out /tmp/p1 [--rows 11]   # CPU, Triton's interpreter
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

import torch
import triton

from lionfs_ros.engine.bench.graph_timing import graph_ms
from lionfs_ros.engine.kernels.few_rows_linear import (BIT_MOVES, CUBLAS, SWAP_OPERANDS, few_rows_linear,
                                                       fused_few_rows_linear)
from lionfs_ros.engine.kernels.few_rows_tuning import _fits, tune
from lionfs_ros.engine.quantization import quantize_fp8

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}
SMOKE_SHAPES = {"o": (64, 256)}
TOLERANCE = 1e-2  # relative error against float64
REPLAYS = 5  # timed graph replays per candidate; the median is kept
TUNE_S = 20.0  # the engine tuning's compile budget per shape here
EPS = 1e-5


def graph_us(run_all, copies: int, device) -> float:
    """Microseconds of one of ``copies`` products: ``run_all`` (all of them) replayed from one CUDA graph (median of
    ``REPLAYS``); on the CPU, one pass by the wall clock."""
    if device.type != "cuda":
        t0 = time.perf_counter()
        run_all()
        return (time.perf_counter() - t0) * 1e6 / copies
    return graph_ms(run_all, device, REPLAYS, warmup_replays=1) * 1e3 / copies


def swept_tiles(rows: int, smoke: bool, fp8: bool = True, wide: bool = False) -> list[tuple]:
    """The configs swept, (block_m, block_n, block_k, warps, stages, split, flags). One row: the one-row path, 4 warps
    (8 where a step is 16K codes or more), the bit-move upcast. More rows: 16-row blocks on the tensor cores, every
    flag combination (``few_rows_linear.BIT_MOVES``, ``SWAP_OPERANDS``), 8 warps for 128 columns."""
    if rows == 1:
        if smoke:
            return [(1, 16, 64, 4, 1, 1, 0), (1, 16, 128, 4, 2, 2, 0)]
        return [(1, bn, bk, 4 if bn * bk < 16384 else 8, st, sp, 1)
                for bn, bk, st, sp in itertools.product((8, 16, 32), (256, 512, 1024), (1, 3), (1, 2, 4))]
    if smoke:
        return [(16, 16, 64, 4, 1, 1, 0), (16, 16, 64, 4, 1, 2, 2)]
    if wide:  # narrower column tiles, longer steps, more slices; the bit-move upcast, operands in order
        return [c for c in ((16, bn, bk, 4, st, sp, BIT_MOVES if fp8 else 0) for bn, bk, st, sp in itertools.product(
            (16, 32, 64), (256, 512, 1024), (2, 3, 4), (1, 2, 4, 8))) if _fits(c)]
    flag_sets = (0, BIT_MOVES, SWAP_OPERANDS, BIT_MOVES | SWAP_OPERANDS) if fp8 else (0, SWAP_OPERANDS)
    return [(16, bn, bk, 8 if bn == 128 else 4, st, sp, flags)
            for bn, bk, st, sp, flags in itertools.product((64, 128), (128, 256), (3, 4), (1, 2, 4), flag_sets)]


def folded_us(timed_fused, x, n: int, k: int, config) -> dict:
    """The best tiles with a decoder sublayer's neighbours folded in (``fused_few_rows_linear``): the input RMSNorm
    applied as the activations load (HF's arithmetic), the norm's weight in the matrix with each output row scaled
    after the sum, the residual add with its sums of squares; microseconds each."""
    g = torch.ones(k, device=x.device, dtype=x.dtype)
    sums = x.float().pow(2).sum(-1)[None].contiguous()  # [1, M]: one producer tile
    residual = torch.randn(x.shape[0], n, device=x.device, dtype=x.dtype)
    return {"norm_at_load": timed_fused(config, norm=(g, sums, EPS)), "row_scale": timed_fused(config, norm=(None, sums, EPS)),
            "residual": timed_fused(config, residual=residual)}


def parse_config(text: str) -> tuple:
    """A config key of the JSON (``str`` of a tuple of ints) back to the tuple."""
    return tuple(int(v) for v in text.strip("()").split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--rows", type=int, default=1, help="1 (a generated token) or up to 16 (a decided frame: 11)")
    parser.add_argument("--weights", choices=("fp8", "bf16"), default="fp8", help="FP8 codes, or the bf16 weights")
    parser.add_argument("--wide", action="store_true", help="more rows: narrow tiles, long steps, many slices")
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float16 if args.smoke else torch.bfloat16
    fp8 = args.weights == "fp8"
    out_path = Path(args.out) / f"{args.weights}_tiles_{args.rows}_rows{'_wide' if args.wide else ''}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "triton": triton.__version__, "torch": torch.__version__, "rows": args.rows, "weights": args.weights,
              "shapes": {}}
    l2 = torch.cuda.get_device_properties(device).L2_cache_size if device.type == "cuda" else 0
    for name, (n, k) in (SMOKE_SHAPES if args.smoke else SHAPES).items():
        copies = max(2, math.ceil(2 * l2 / (n * k)))
        plain = [(torch.randn(n, k, device=device) * 0.02) for _ in range(copies)]
        ws = [(q.codes, q.scale) for q in map(quantize_fp8, plain)] if fp8 else [(w.to(dtype), None) for w in plain]
        x = torch.randn(args.rows, k, device=device, dtype=dtype)
        ref = x.double() @ ws[0][0].double().t() * (ws[0][1].double() if fp8 else 1)  # [rows, N]

        def timed(config):
            return graph_us(lambda: [few_rows_linear(x, w, scale, config=config) for w, scale in ws], copies, device)

        def timed_fused(config, **fold):
            return graph_us(lambda: [fused_few_rows_linear(x, w, scale, config=config, **fold) for w, scale in ws],
                            copies, device)

        entry = result["shapes"].setdefault(name, {"shape": [n, k], "copies": copies, "variant": {}})
        if not args.smoke:
            picked = tune(ws, args.rows, dtype, time.monotonic() + TUNE_S)["config"]  # a tile, or "cublas" (bf16)
            picked = picked if picked == CUBLAS else tuple(picked)
            entry["engine_kernel"] = {"config": picked if picked == CUBLAS else list(picked), "us": timed(picked)}
        for c in swept_tiles(args.rows, args.smoke, fp8, args.wide):
            try:
                got = few_rows_linear(x, *ws[0], config=c)
                err = float((got.double() - ref).norm() / ref.norm())
                us = timed(c)
            except Exception as e:  # noqa: BLE001 - a candidate this GPU refuses (registers, shared memory)
                entry["variant"][str(c)] = {"error": f"{type(e).__name__}: {str(e)[:120]}"}
                continue
            entry["variant"][str(c)] = {"us": us, "rel_error": err, "ok": err < TOLERANCE,
                                        "tb_per_s": n * k * ws[0][0].element_size() / (us * 1e-6) / 1e12}
        ok = {c: v for c, v in entry["variant"].items() if v.get("ok")}
        best = min(ok, key=lambda c: ok[c]["us"], default=None)
        entry["best_variant"] = {"config": best, **ok[best]} if best else None
        if best and not args.smoke and args.rows == 1 and fp8:  # the same tiles with Triton's conversion
            c = (*parse_config(best)[:6], 0)
            entry["best_with_conversion"] = {"config": str(c), "us": timed(c)}
        if best:
            entry["best_folded"] = folded_us(timed_fused, x, n, k, parse_config(best))
        print(name, "engine", entry.get("engine_kernel"), "best variant", entry["best_variant"], flush=True)
        out_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
