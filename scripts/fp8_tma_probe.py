"""The 11-row FP8 product with the weight tiles brought in by the TMA (issue 14, a probe).

The engine's few-rows kernel (``engine/kernels/few_rows_linear.py``) loads each weight tile with pointer loads: every
thread computes addresses and issues 16-byte ``cp.async`` copies, and Nsight Compute (``ncu-few-rows-fp8-h200.json``)
found the 11-row launches at 17-33 % occupancy with under one eligible warp a scheduler: the loop's instructions, not
the bytes in flight, look like the limit. Hopper's tensor memory accelerator copies a whole tile for one instruction.
This probe times, on the Llama-3-8B FP8 shapes at 11 rows, the engine kernel as its tuning picks it against a kernel
of the same arithmetic (bit-move upcast, 16-row ``tl.dot``, split-K finished by the tile's last slice) whose weight
tile (and optionally activation tile) comes through a tensor descriptor:
- ``tma``: the weight tile by TMA, the activations by pointer loads;
- ``tma_x``: both by TMA (rows past ``M`` are zero-filled by the copy);
- ``tma_swap``, ``tma_x_swap``: the same with the operands swapped (``W x^T``): the upcast weight tile is Hopper's
  wgmma's left operand, taken from registers, the activations its narrow right one (16 columns) in shared memory;
- ``f16`` (pointer loads, as the engine), ``tma_x_f16``: fp16 operands instead of bf16: each pair of codes in one
  conversion instruction (``cvt.rn.f16x2.e4m3x2``) where bf16 needs the bit moves (3 instructions a code) or
  Triton's two-step conversion; the activations cast to fp16 in the kernel (exact for bf16 values inside fp16's
  normal range); ``f16x``, ``tma_x_f16``: the activations given as fp16 (cast before the timing: what a producer
  writing an fp16 copy would give);
- ``tma_ws``: ``tma`` with Triton's automatic warp specialization of the loop (a loader warp, mma warps);
- ``persistent``: a grid of ``programs`` programs, each walking (tile, slice) work items, all their k-steps in one
  flattened loop so the copies of the next item overlap the end of the current one.
Each candidate is checked against the float64 product.

    PYTHONPATH=. python3 scripts/fp8_tma_probe.py --out $OUT
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
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from lionfs_ros.engine.bench.graph_timing import graph_ms
from lionfs_ros.engine.kernels.few_rows_linear import _finish, _upcast, few_rows_linear, tile_counters
from lionfs_ros.engine.kernels.few_rows_tuning import tune
from lionfs_ros.engine.quantization import quantize_fp8

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}
ROWS = 11
FP16_INPUT = ("f16x", "tma_x_f16")  # kinds given the activations as fp16
BLOCK_M = 16
TOLERANCE = 1e-2  # relative error against float64
REPLAYS = 5
TUNE_S = 20.0


@triton.jit
def _slice_done(acc, rows, cols, row_ok, col_ok, s_ptr, out_ptr, part_ptr, count_ptr, pid_k, pid_n, split, M, N,
                SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """A slice's partial ``acc [BM, BN]``: stored and counted; the tile's last slice sums them in order and stores
    ``sum * scale`` (the engine kernel's split-K finish)."""
    ok = row_ok[:, None] & col_ok[None, :]
    if SPLIT_K:
        part = part_ptr + rows[:, None] * N + cols[None, :]
        tl.store(part + pid_k * M * N, acc, mask=ok)
        tl.debug_barrier()
        done = tl.atomic_add(count_ptr + pid_n, 1, sem="acq_rel", scope="gpu")
        if done == split - 1:
            total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for i in range(0, split):
                total += tl.load(part + i * M * N, mask=ok, other=0.0, cache_modifier=".cg")
            tl.store(count_ptr + pid_n, 0)
            _finish(total, rows, cols, row_ok, col_ok, ok, s_ptr, out_ptr, out_ptr, N, out_ptr, N, out_ptr, pid_n,
                    M, N, rows * 0.0, True, False, False, False, False, BLOCK_M, BLOCK_N)
    else:
        _finish(acc, rows, cols, row_ok, col_ok, ok, s_ptr, out_ptr, out_ptr, N, out_ptr, N, out_ptr, pid_n,
                M, N, rows * 0.0, True, False, False, False, False, BLOCK_M, BLOCK_N)


@triton.jit
def _tma_kernel(x_ptr, x_desc, w_desc, w_ptr, s_ptr, out_ptr, part_ptr, count_ptr, M, N, K, k_per_split,
                X_TMA: tl.constexpr, W_TMA: tl.constexpr, F16: tl.constexpr, WS: tl.constexpr, SWAP: tl.constexpr,
                STAGES: tl.constexpr,
                SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_k = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    row_ok = rows < M
    k_start = pid_k * k_per_split
    if SWAP:  # the upcast weight tile as the dot's left operand (wgmma takes it from registers)
        acc_t = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in tl.range(k_start, k_start + k_per_split, BLOCK_K, num_stages=STAGES, warp_specialize=WS):
        if X_TMA:
            x = x_desc.load([0, k0])  # [BM, BK], rows past M zero
        else:
            x = tl.load(x_ptr + rows[:, None] * K + (k0 + ks)[None, :], mask=row_ok[:, None], other=0.0)
        if W_TMA:
            w = w_desc.load([pid_n * BLOCK_N, k0])  # [BN, BK] FP8 codes
        else:
            w = tl.load(w_ptr + cols[:, None] * K + (k0 + ks)[None, :], mask=(cols < N)[:, None], other=0.0)
        if F16:  # fp16 operands: the codes by one conversion per pair (cvt.rn.f16x2.e4m3x2), the activations cast
            acc += tl.dot(x.to(tl.float16), tl.trans(w.to(tl.float16)))
        elif SWAP:
            acc_t += tl.dot(_upcast(w, tl.bfloat16, True), tl.trans(x))  # [BN, BK] @ [BK, BM]
        else:
            acc += tl.dot(x, tl.trans(_upcast(w, tl.bfloat16, True)))  # [BM, BK] @ [BK, BN]
    if SWAP:
        acc = tl.trans(acc_t)
    _slice_done(acc, rows, cols, row_ok, cols < N, s_ptr, out_ptr, part_ptr, count_ptr, pid_k, pid_n,
                tl.num_programs(0), M, N, SPLIT_K, BLOCK_M, BLOCK_N)


@triton.jit
def _persistent_kernel(x_ptr, w_desc, s_ptr, out_ptr, part_ptr, count_ptr, M, N, K, k_per_split, items, split,
                       STAGES: tl.constexpr, SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       BLOCK_K: tl.constexpr):
    """Work items ``i = pid_n * split + pid_k``; program ``p`` takes ``p, p + P, ...``, their k-steps in one loop."""
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    rows = tl.arange(0, BLOCK_M)
    ks = tl.arange(0, BLOCK_K)
    row_ok = rows < M
    steps = k_per_split // BLOCK_K
    mine = tl.cdiv(items - pid, programs)
    item = pid
    pid_n = item // split
    pid_k = item % split
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for t in tl.range(0, mine * steps, num_stages=STAGES):
        step = t % steps
        k0 = pid_k * k_per_split + step * BLOCK_K
        x = tl.load(x_ptr + rows[:, None] * K + (k0 + ks)[None, :], mask=row_ok[:, None], other=0.0)
        w = w_desc.load([pid_n * BLOCK_N, k0])
        acc += tl.dot(x, tl.trans(_upcast(w, tl.bfloat16, True)))
        if step == steps - 1:
            cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
            _slice_done(acc, rows, cols, row_ok, cols < N, s_ptr, out_ptr, part_ptr, count_ptr, pid_k, pid_n, split,
                        M, N, SPLIT_K, BLOCK_M, BLOCK_N)
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            item += programs
            pid_n = item // split
            pid_k = item % split


def tma_product(kind: str, x, w, scale, block_n: int, block_k: int, warps: int, stages: int, split: int,
                programs: int = 0):
    """``x [M, K] @ (w [N, K] FP8 * scale).T`` by the ``kind`` kernel -> ``[M, N]`` in ``x``'s dtype (fp16 for the
    ``FP16_INPUT`` kinds, else bf16)."""
    m, k = x.shape
    n = w.shape[0]
    k_per_split = k // split
    assert k_per_split % block_k == 0, (k, split, block_k)
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    tiles = triton.cdiv(n, block_n)
    part = torch.empty(split, m, n, dtype=torch.float32, device=x.device) if split > 1 else out
    count = tile_counters(tiles, x.device) if split > 1 else out
    w_desc = TensorDescriptor.from_tensor(w, [block_n, block_k])
    if kind == "persistent":
        items = tiles * split
        _persistent_kernel[(min(programs, items),)](x, w_desc, scale, out, part, count, m, n, k, k_per_split, items,
                                                     split, STAGES=stages, SPLIT_K=split > 1, BLOCK_M=BLOCK_M,
                                                     BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps)
        return out
    x_desc = TensorDescriptor(x, [m, k], [x.stride(0), 1], [BLOCK_M, block_k])
    _tma_kernel[(split, tiles)](x, x_desc, w_desc, w, scale, out, part, count, m, n, k, k_per_split,
                                X_TMA=kind in ("tma_x", "tma_x_swap", "tma_x_f16"), W_TMA=kind not in ("f16", "f16x"),
                                F16="f16" in kind, WS=kind == "tma_ws",
                                SWAP=kind.endswith("swap"), STAGES=stages, SPLIT_K=split > 1,
                                BLOCK_M=BLOCK_M, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps)
    return out


def candidates(n: int, k: int, sms: int) -> list[tuple]:
    """(kind, block_n, block_k, warps, stages, split, programs), the operands-swapped kinds first."""
    grid = {"f16": ((64,), (128, 256), (3, 4), (1, 2, 4)),
            "f16x": ((32, 64, 128), (128, 256), (3, 4), (1, 2, 4)),
            "tma_x_f16": ((64, 128), (128, 256), (4,), (1, 2, 4)),
            "tma_swap": ((64, 128), (128, 256), (3, 5), (1, 2, 4, 8)),
            "tma_x_swap": ((64, 128), (128, 256), (4,), (1, 2, 4, 8)),
            "tma": ((64,), (128, 256), (4,), (1, 2, 4, 8)),
            "tma_x": ((64,), (128, 256), (4,), (1, 2, 4, 8)),
            "tma_ws": ((64,), (128, 256), (4,), (1, 4))}
    found = [(kind, bn, bk, 8 if bn == 128 else 4, st, sp, 0) for kind, axes in grid.items()
             for bn, bk, st, sp in itertools.product(*axes) if (k // sp) % bk == 0]
    found += [("persistent", 64, bk, 4, st, sp, per_sm * sms)
              for bk, st, sp, per_sm in itertools.product((128, 256), (4,), (1, 4), (2, 4)) if (k // sp) % bk == 0]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=".")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--budget-s", type=float, default=400.0, help="stop sweeping after this long")
    parser.add_argument("--kinds", default="f16,f16x,tma_x_f16,tma_x,tma_swap,tma_x_swap,tma,tma_ws,persistent")
    args = parser.parse_args()
    device = torch.device("cuda")
    started = time.monotonic()
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device=device))
    out_path = Path(args.out) / "fp8_tma_11_rows.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    result = {"device": torch.cuda.get_device_name(device), "triton": triton.__version__, "torch": torch.__version__,
              "rows": ROWS, "shapes": {}}
    l2 = torch.cuda.get_device_properties(device).L2_cache_size
    names = args.shapes.split(",")
    for index, name in enumerate(names):
        n, k = SHAPES[name]
        deadline = time.monotonic() + (args.budget_s - (time.monotonic() - started)) / (len(names) - index)
        copies = max(2, math.ceil(2 * l2 / (n * k)))
        plain = (torch.randn(n, k, device=device) * 0.02 for _ in range(copies))
        ws = [(q.codes, q.scale) for q in map(quantize_fp8, plain)]
        x = torch.randn(ROWS, k, device=device, dtype=torch.bfloat16)
        ref = x.double() @ ws[0][0].double().t() * ws[0][1].double()
        entry = result["shapes"].setdefault(name, {"shape": [n, k], "copies": copies, "variant": {}})
        picked = tuple(tune(ws, ROWS, torch.bfloat16, time.monotonic() + TUNE_S)["config"])
        engine_us = graph_ms(lambda: [few_rows_linear(x, w, s, config=picked) for w, s in ws], device, REPLAYS,
                             warmup_replays=1) * 1e3 / copies
        entry["engine_kernel"] = {"config": list(picked), "us": engine_us,
                                  "tb_per_s": n * k / (engine_us * 1e-6) / 1e12}
        print(name, "engine", entry["engine_kernel"], flush=True)
        x16 = x.to(torch.float16)
        for c in (c for c in candidates(n, k, sms) if c[0] in args.kinds.split(",")):
            xc = x16 if c[0] in FP16_INPUT else x
            if time.monotonic() > deadline:
                entry["stopped"] = "budget"
                break
            try:
                got = tma_product(c[0], xc, *ws[0], *c[1:])
                err = float((got.double() - ref).norm() / ref.norm())
                us = graph_ms(lambda: [tma_product(c[0], xc, w, s, *c[1:]) for w, s in ws], device, REPLAYS,
                              warmup_replays=1) * 1e3 / copies
            except Exception as e:  # noqa: BLE001 - a candidate this Triton or GPU refuses
                entry["variant"][str(c)] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
                print(name, c, "error", str(e)[:200], flush=True)
                continue
            entry["variant"][str(c)] = {"us": us, "rel_error": err, "ok": err < TOLERANCE,
                                        "tb_per_s": n * k / (us * 1e-6) / 1e12}
        ok = {c: v for c, v in entry["variant"].items() if v.get("ok")}
        for kind in args.kinds.split(","):
            mine = {c: v for c, v in ok.items() if c.startswith(f"('{kind}'")}
            best = min(mine, key=lambda c: mine[c]["us"], default=None)
            entry[f"best_{kind}"] = {"config": best, **mine[best]} if best else None
            print(name, kind, entry[f"best_{kind}"], flush=True)
        out_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
