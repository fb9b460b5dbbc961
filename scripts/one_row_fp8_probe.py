"""Does a generated token's FP8 product read faster with its loads in flight together? (issue 14, a probe)

At one row the engine's few-rows kernel (``engine/kernels/few_rows_linear.py``) reads the FP8 q/k/v, o and down
weights of Llama-3-8B at 2.0-3.0 TB/s where cuBLAS reads bf16 at up to 4.2: its one-row path keeps a
``[BLOCK_N, BLOCK_K]`` float32 accumulator, which caps ``BLOCK_K`` (registers), so a program walks its slice in several
dependent load rounds. This probe times, on the same weights and input, the kernel as tuned against a variant that
reduces over ``k`` at every step (a ``[BLOCK_N]`` accumulator: wider ``BLOCK_K``, fewer rounds) and asks Triton to
pipeline the loop's loads (``tl.range(..., num_stages=)``); each candidate is checked against the float64 product.

    PYTHONPATH=. python3 scripts/one_row_fp8_probe.py --out $OUT
    PYTHONPATH=. python3 scripts/one_row_fp8_probe.py --smoke --out /tmp/p1   # CPU, Triton's interpreter, tiny
"""
from __future__ import annotations

import argparse
import ast
import itertools
import json
import math
import time
from pathlib import Path

import torch
import triton
import triton.language as tl

from lionfs_ros.engine.bench.graph_timing import graph_ms
from lionfs_ros.engine.kernels import few_rows_linear as kernel
from lionfs_ros.engine.kernels.few_rows_tuning import tune
from lionfs_ros.engine.quantization import fp8_linear_reference, quantize_fp8

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}
SMOKE_SHAPES = {"o": (64, 256)}
TOLERANCE = 1e-2  # relative error against float64
REPLAYS = 5  # timed graph replays per candidate; the median is kept


@triton.jit
def _one_row_kernel(x_ptr, w_ptr, s_ptr, out_ptr, part_ptr, count_ptr, N, K, k_per_split,
                    SPLIT_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
                    BITS: tl.constexpr):
    pid_k = tl.program_id(0)
    pid_n = tl.program_id(1)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    ks = tl.arange(0, BLOCK_K)
    col_ok = cols < N
    k_start = pid_k * k_per_split
    k_end = tl.minimum(k_start + k_per_split, K)
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in tl.range(k_start, k_end, BLOCK_K, num_stages=STAGES):
        k = k0 + ks
        k_ok = k < k_end
        x = tl.load(x_ptr + k, mask=k_ok, other=0.0).to(tl.float32)  # [BK]
        w = tl.load(w_ptr + cols[:, None] * K + k[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
        acc += tl.sum(kernel._upcast(w, tl.float32, BITS) * x[None, :], axis=1)  # [BN]
    if SPLIT_K:
        split = tl.num_programs(0)
        tl.store(part_ptr + pid_k * N + cols, acc, mask=col_ok)
        tl.debug_barrier()
        done = tl.atomic_add(count_ptr + pid_n, 1, sem="acq_rel", scope="gpu")
        if done == split - 1:
            total = tl.zeros((BLOCK_N,), dtype=tl.float32)
            for i in range(0, split):
                total += tl.load(part_ptr + i * N + cols, mask=col_ok, other=0.0, cache_modifier=".cg")
            tl.store(count_ptr + pid_n, 0)
            total = total * tl.load(s_ptr + cols, mask=col_ok, other=0.0)
            tl.store(out_ptr + cols, total.to(out_ptr.dtype.element_ty), mask=col_ok)
    else:
        acc = acc * tl.load(s_ptr + cols, mask=col_ok, other=0.0)
        tl.store(out_ptr + cols, acc.to(out_ptr.dtype.element_ty), mask=col_ok)


def one_row(x, codes, scale, config, counters):
    """``x [1, K]`` (bf16) times FP8 ``codes [N, K]`` (``scale [N]``) with the variant; config (block_n, block_k, warps,
    stages, split, bits: the engine's ``_upcast`` by bit moves, else Triton's conversion)."""
    block_n, block_k, warps, stages, split, bits = config
    n, k = codes.shape
    k_per_split = triton.cdiv(triton.cdiv(k, split), block_k) * block_k
    split = triton.cdiv(k, k_per_split)
    out = torch.empty(1, n, dtype=x.dtype, device=x.device)
    part = torch.empty(split, n, dtype=torch.float32, device=x.device) if split > 1 else out
    _one_row_kernel[(split, triton.cdiv(n, block_n))](x, codes, scale, out, part, counters, n, k, k_per_split,
                                                       SPLIT_K=split > 1, BLOCK_N=block_n, BLOCK_K=block_k,
                                                       STAGES=stages, BITS=bool(bits) and x.dtype == torch.bfloat16,
                                                       num_warps=warps)
    return out


def graph_us(run_all, copies: int, device) -> float:
    """Microseconds of one of ``copies`` products: ``run_all`` (all of them) replayed from one CUDA graph (median of
    ``REPLAYS``); on the CPU, one pass by the wall clock."""
    if device.type != "cuda":
        t0 = time.perf_counter()
        run_all()
        return (time.perf_counter() - t0) * 1e6 / copies
    return graph_ms(run_all, device, REPLAYS, warmup_replays=1) * 1e3 / copies


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
    counters = torch.zeros(1 << 16, dtype=torch.int32, device=device)
    if args.smoke:
        grid = [(16, 64, 4, 1, 1, 0), (16, 128, 4, 2, 2, 0)]
    else:  # 4 warps; 8 where a step is 16K codes or more
        grid = [(bn, bk, 4 if bn * bk < 16384 else 8, st, sp, 1)
                for bn, bk, st, sp in itertools.product((8, 16, 32), (256, 512, 1024), (1, 3), (1, 2, 4))]
    for name, (n, k) in (SMOKE_SHAPES if args.smoke else SHAPES).items():
        copies = max(2, math.ceil(2 * l2 / (n * k)))
        ws = [quantize_fp8(torch.randn(n, k, device=device) * 0.02) for _ in range(copies)]
        x = torch.randn(1, k, device=device, dtype=dtype)
        ref = fp8_linear_reference(x.double(), ws[0])
        entry = result["shapes"].setdefault(name, {"shape": [n, k], "copies": copies, "variant": {}})
        if not args.smoke:
            tuned = tune([(w.codes, w.scale) for w in ws], 1, dtype, time.monotonic() + 20.0)
            cfg = tuple(tuned["config"])
            entry["engine_kernel"] = {"config": list(cfg), "us": graph_us(
                lambda: [kernel.few_rows_linear(x, w.codes, w.scale, config=cfg) for w in ws], copies, device)}
        for c in grid:
            try:
                got = one_row(x, ws[0].codes, ws[0].scale, c, counters)
                err = float((got.double() - ref).norm() / ref.norm())
                us = graph_us(lambda c=c: [one_row(x, w.codes, w.scale, c, counters) for w in ws], copies, device)
            except Exception as e:  # noqa: BLE001 - a candidate this GPU refuses (registers, shared memory)
                entry["variant"][str(c)] = {"error": f"{type(e).__name__}: {str(e)[:120]}"}
                continue
            entry["variant"][str(c)] = {"us": us, "rel_error": err, "ok": err < TOLERANCE,
                                        "tb_per_s": n * k / (us * 1e-6) / 1e12}
        ok = {c: v for c, v in entry["variant"].items() if v.get("ok")}
        best = min(ok, key=lambda c: ok[c]["us"], default=None)
        entry["best_variant"] = {"config": best, **ok[best]} if best else None
        if best and not args.smoke:  # the same tiles with Triton's conversion instead of the bit moves
            c = (*ast.literal_eval(best)[:5], 0)
            entry["best_with_conversion"] = {"config": str(c), "us": graph_us(
                lambda: [one_row(x, w.codes, w.scale, c, counters) for w in ws], copies, device)}
        print(name, "engine", entry.get("engine_kernel"), "best variant", entry["best_variant"], flush=True)
        out_path.write_text(json.dumps(result, indent=1))



if __name__ == "__main__":
    main()
