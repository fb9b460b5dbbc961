"""Weight-only FP8 linear layer: ``out = (x @ Q.T) * s + b`` with ``Q`` FP8 e4m3 codes ``[N, K]``, ``s [N]``.

One program computes a ``BLOCK_M x BLOCK_N`` tile of the output: it walks the input dim in
``BLOCK_K`` steps, loads the activations (bf16/fp16) and the FP8 weight tile, upcasts the weights in
registers and accumulates ``tl.dot`` in float32; the per-channel scale and the bias are applied once
at the end. At a few rows the work is reading the weights once, so the tile shapes are picked to put
enough programs (and bytes in flight) on every SM: narrow tiles for narrow matrices.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

SMALL_M = 16  # rows up to this: one row block (a decided frame, a generated token)
LARGE_BLOCK = 64  # row and column block for longer feeds (prompts): those are rare and not latency-critical
PROGRAMS_PER_SM = 2  # aim for at least this many programs per SM on a narrow matrix


@triton.jit
def _fp8_linear_kernel(x_ptr, w_ptr, s_ptr, b_ptr, out_ptr, M, N, K, stride_xm, stride_wn, stride_om,
                       HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    ks = tl.arange(0, BLOCK_K)  # [BK]
    row_ok = rows < M
    col_ok = cols < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + ks
        k_ok = k < K
        x = tl.load(x_ptr + rows[:, None] * stride_xm + k[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_ptr + cols[:, None] * stride_wn + k[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
        acc += tl.dot(x, tl.trans(w.to(x.dtype)))  # [BM, BK] @ [BK, BN]
    scale = tl.load(s_ptr + cols, mask=col_ok, other=0.0)
    acc = acc * scale[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    out = out_ptr + rows[:, None] * stride_om + cols[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


# (block_n, block_k, num_warps, num_stages) by matrix shape ``(N, K)``, chosen by ``tune`` on this GPU when an
# FP8 engine is built; a shape not tuned takes ``_heuristic``.
TUNED: dict[tuple[int, int], tuple[int, int, int, int]] = {}
CANDIDATES = ((16, 256, 4, 4), (32, 256, 4, 4), (64, 256, 4, 4), (16, 512, 4, 3), (32, 512, 4, 3), (64, 128, 4, 4),
              (32, 128, 4, 6))
TUNE_REPS = 10
_SM_COUNT: dict[int, int] = {}


def _sm_count(device: torch.device) -> int:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def _heuristic(n: int, k: int, device: torch.device) -> tuple[int, int, int, int]:
    """The widest column block that still gives ``PROGRAMS_PER_SM`` programs per SM (at least 16)."""
    want = PROGRAMS_PER_SM * _sm_count(device)
    block_n = 64
    while block_n > 16 and triton.cdiv(n, block_n) < want:
        block_n //= 2
    block_k = 256 if k >= 256 else max(16, triton.next_power_of_2(k))
    return block_n, block_k, 4, 4


def pick_config(m: int, n: int, k: int, device: torch.device) -> tuple[int, int, int, int, int]:
    """(block_m, block_n, block_k, num_warps, num_stages) for an ``[m, k] x [n, k]^T`` product."""
    if m > SMALL_M:
        return LARGE_BLOCK, LARGE_BLOCK, min(128, max(16, triton.next_power_of_2(k))), 4, 3
    block_n, block_k, warps, stages = TUNED.get((n, k)) or _heuristic(n, k, device)
    return SMALL_M, block_n, block_k, warps, stages


def fp8_linear(x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None,
               config: tuple[int, int, int, int, int] | None = None) -> torch.Tensor:
    """``x [M, K]`` (bf16/fp16) times FP8 ``codes [N, K]`` with ``scale [N]`` -> ``[M, N]`` in ``x``'s dtype."""
    if x.dim() != 2 or codes.dim() != 2 or x.shape[1] != codes.shape[1]:
        raise ValueError(f"fp8_linear: x {tuple(x.shape)} and weight {tuple(codes.shape)} do not match")
    if x.stride(1) != 1:
        x = x.contiguous()
    m, k = x.shape
    n = codes.shape[0]
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m == 0:
        return out
    block_m, block_n, block_k, warps, stages = config or pick_config(m, n, k, x.device)
    grid = (triton.cdiv(n, block_n), triton.cdiv(m, block_m))
    _fp8_linear_kernel[grid](x, codes, scale, bias if bias is not None else scale, out, m, n, k, x.stride(0),
                             codes.stride(0), out.stride(0), HAS_BIAS=bias is not None, BLOCK_M=block_m,
                             BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=stages)
    return out


@torch.no_grad()
def tune(codes: torch.Tensor, scale: torch.Tensor, rows: int, dtype: torch.dtype = torch.bfloat16) -> dict:
    """Time the candidate tile shapes on this weight at ``rows`` rows (median of ``TUNE_REPS``) and keep the
    fastest for its shape in ``TUNED``; returns ``{"shape", "rows", "config", "us", "heuristic_us"}``."""
    n, k = codes.shape
    x = torch.randn(rows, k, device=codes.device, dtype=dtype)
    heuristic = (SMALL_M, *_heuristic(n, k, codes.device))
    timings = {}
    for cand in {heuristic[1:], *CANDIDATES}:
        config = (SMALL_M, *cand)
        fp8_linear(x, codes, scale, config=config)  # compile
        times = []
        for _ in range(TUNE_REPS):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fp8_linear(x, codes, scale, config=config)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e3)
        timings[cand] = sorted(times)[len(times) // 2]
    best = min(timings, key=timings.get)
    TUNED[(n, k)] = best
    return {"shape": [n, k], "rows": rows, "config": list(best), "us": timings[best],
            "heuristic_us": timings[heuristic[1:]]}
