"""A generated token's FP8 product: the one-row tiles of the engine's kernel swept wide (issue 14, a probe).

The engine's few-rows kernel (``engine/kernels/few_rows_linear.py``) sums its one-row path over ``k`` at every step
into a ``[BLOCK_N]`` accumulator, so ``BLOCK_K`` can be wide and a program's loads are in flight together
(pipelined by ``num_stages``). This probe times, on the Llama-3-8B FP8 shapes at one row, the kernel as the engine's
tuning picks it against a wide grid of one-row tiles (``BLOCK_N`` x ``BLOCK_K`` x stages x split, with the bit-move
upcast; the best again with Triton's conversion); each candidate is checked against the float64 product.
``docs/benchmarks/one-row-fp8-probe-h200.json`` is this probe's first form (main f37f156), which timed the same
accumulator as a kernel of its own before it became the engine's one-row path.

    PYTHONPATH=. python3 scripts/one_row_fp8_probe.py --out $OUT
    PYTHONPATH=. python3 scripts/one_row_fp8_probe.py --smoke --out /tmp/p1   # CPU, Triton's interpreter, tiny
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
from lionfs_ros.engine.kernels.few_rows_linear import few_rows_linear
from lionfs_ros.engine.kernels.few_rows_tuning import tune
from lionfs_ros.engine.quantization import fp8_linear_reference, quantize_fp8

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}
SMOKE_SHAPES = {"o": (64, 256)}
TOLERANCE = 1e-2  # relative error against float64
REPLAYS = 5  # timed graph replays per candidate; the median is kept
TUNE_S = 20.0  # the engine tuning's compile budget per shape here


def graph_us(run_all, copies: int, device) -> float:
    """Microseconds of one of ``copies`` products: ``run_all`` (all of them) replayed from one CUDA graph (median of
    ``REPLAYS``); on the CPU, one pass by the wall clock."""
    if device.type != "cuda":
        t0 = time.perf_counter()
        run_all()
        return (time.perf_counter() - t0) * 1e6 / copies
    return graph_ms(run_all, device, REPLAYS, warmup_replays=1) * 1e3 / copies


def one_row_tiles(smoke: bool) -> list[tuple]:
    """The engine's one-row configs swept: (1, block_n, block_k, warps, stages, split, bits); 4 warps, 8 where a step
    is 16K codes or more."""
    if smoke:
        return [(1, 16, 64, 4, 1, 1, 0), (1, 16, 128, 4, 2, 2, 0)]
    return [(1, bn, bk, 4 if bn * bk < 16384 else 8, st, sp, 1)
            for bn, bk, st, sp in itertools.product((8, 16, 32), (256, 512, 1024), (1, 3), (1, 2, 4))]


def parse_config(text: str) -> tuple:
    """A config key of the JSON (``str`` of a tuple of ints) back to the tuple."""
    return tuple(int(v) for v in text.strip("()").split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float16 if args.smoke else torch.bfloat16
    out_path = Path(args.out) / "one_row_fp8.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "triton": triton.__version__, "torch": torch.__version__, "shapes": {}}
    l2 = torch.cuda.get_device_properties(device).L2_cache_size if device.type == "cuda" else 0
    for name, (n, k) in (SMOKE_SHAPES if args.smoke else SHAPES).items():
        copies = max(2, math.ceil(2 * l2 / (n * k)))
        ws = [quantize_fp8(torch.randn(n, k, device=device) * 0.02) for _ in range(copies)]
        x = torch.randn(1, k, device=device, dtype=dtype)
        ref = fp8_linear_reference(x.double(), ws[0])

        def timed(config):
            return graph_us(lambda: [few_rows_linear(x, w.codes, w.scale, config=config) for w in ws], copies, device)

        entry = result["shapes"].setdefault(name, {"shape": [n, k], "copies": copies, "variant": {}})
        if not args.smoke:
            picked = tuple(tune([(w.codes, w.scale) for w in ws], 1, dtype, time.monotonic() + TUNE_S)["config"])
            entry["engine_kernel"] = {"config": list(picked), "us": timed(picked)}
        for c in one_row_tiles(args.smoke):
            try:
                got = few_rows_linear(x, ws[0].codes, ws[0].scale, config=c)
                err = float((got.double() - ref).norm() / ref.norm())
                us = timed(c)
            except Exception as e:  # noqa: BLE001 - a candidate this GPU refuses (registers, shared memory)
                entry["variant"][str(c)] = {"error": f"{type(e).__name__}: {str(e)[:120]}"}
                continue
            entry["variant"][str(c)] = {"us": us, "rel_error": err, "ok": err < TOLERANCE,
                                        "tb_per_s": n * k / (us * 1e-6) / 1e12}
        ok = {c: v for c, v in entry["variant"].items() if v.get("ok")}
        best = min(ok, key=lambda c: ok[c]["us"], default=None)
        entry["best_variant"] = {"config": best, **ok[best]} if best else None
        if best and not args.smoke:  # the same tiles with Triton's conversion instead of the bit moves
            c = (*parse_config(best)[:6], 0)
            entry["best_with_conversion"] = {"config": str(c), "us": timed(c)}
        print(name, "engine", entry.get("engine_kernel"), "best variant", entry["best_variant"], flush=True)
        out_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
