"""Weight-only FP8 linear layer: ``out = (x @ Q.T) * s + b`` with ``Q`` FP8 e4m3 codes ``[N, K]``, ``s [N]``.

One program computes a ``BLOCK_M x BLOCK_N`` tile of the output over one slice of the input dim: it walks
its slice in ``BLOCK_K`` steps, loads the activations (bf16/fp16) and the FP8 weight tile, upcasts the
weights in registers and accumulates ``tl.dot`` in float32. With one slice (``split == 1``) the
per-channel scale and the bias are applied at the end and the tile is stored; with ``split`` slices
(split-K) each program stores its float32 partial sum and a second kernel adds the slices in a fixed
order (deterministic), then scales, adds the bias and casts. At a few rows the work is reading the
weights once, and a narrow matrix (4,096 outputs) gives too few column tiles to keep every SM's
memory pipeline busy: split-K multiplies the programs. Tile shapes and split are picked per weight
shape on the GPU when an FP8 engine is built (``tune``).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

SMALL_M = 16  # rows up to this: one row block (a decided frame, a generated token)
LARGE_BLOCK = 64  # row and column block for longer feeds (prompts): those are rare and not latency-critical
PROGRAMS_PER_SM = 2  # the heuristic aims for at least this many programs per SM
REDUCE_BLOCK = 256  # columns per program of the split-K reduction


@triton.jit
def _fp8_linear_kernel(x_ptr, w_ptr, s_ptr, b_ptr, out_ptr, part_ptr, M, N, K, k_per_split, stride_xm, stride_wn,
                       stride_om, HAS_BIAS: tl.constexpr, PARTIAL: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    ks = tl.arange(0, BLOCK_K)  # [BK]
    row_ok = rows < M
    col_ok = cols < N
    k_start = pid_k * k_per_split
    k_end = tl.minimum(k_start + k_per_split, K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(k_start, k_end, BLOCK_K):
        k = k0 + ks
        k_ok = k < k_end
        x = tl.load(x_ptr + rows[:, None] * stride_xm + k[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_ptr + cols[:, None] * stride_wn + k[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
        acc += tl.dot(x, tl.trans(w.to(x.dtype)))  # [BM, BK] @ [BK, BN]
    ok = row_ok[:, None] & col_ok[None, :]
    if PARTIAL:  # part [split, M, N] float32: this slice's sum, unscaled
        tl.store(part_ptr + (pid_k * M + rows[:, None]) * N + cols[None, :], acc, mask=ok)
    else:
        acc = acc * tl.load(s_ptr + cols, mask=col_ok, other=0.0)[None, :]
        if HAS_BIAS:
            acc += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        tl.store(out_ptr + rows[:, None] * stride_om + cols[None, :], acc.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _split_reduce_kernel(part_ptr, s_ptr, b_ptr, out_ptr, M, N, SPLIT, stride_om, HAS_BIAS: tl.constexpr,
                         BLOCK: tl.constexpr):
    row = tl.program_id(1)
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < N
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(0, SPLIT):  # fixed order: the same sum on every run
        acc += tl.load(part_ptr + (i * M + row) * N + cols, mask=ok, other=0.0)
    acc = acc * tl.load(s_ptr + cols, mask=ok, other=0.0)
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_om + cols, acc.to(out_ptr.dtype.element_ty), mask=ok)


# (block_n, block_k, num_warps, num_stages, split) by weight shape ``(N, K)``, chosen by ``tune`` on this GPU when
# an FP8 engine is built; a shape not tuned takes ``_heuristic``.
TUNED: dict[tuple[int, int], tuple[int, int, int, int, int]] = {}
CANDIDATES = ((32, 256, 4, 4, 1), (64, 256, 4, 4, 1), (32, 128, 4, 6, 1), (32, 256, 4, 4, 2), (64, 256, 4, 4, 2),
              (16, 256, 4, 4, 4), (32, 256, 4, 4, 4), (64, 128, 4, 4, 4), (32, 128, 4, 6, 4), (16, 256, 4, 4, 8),
              (32, 256, 4, 4, 8))
TUNE_REPS = 20
_SM_COUNT: dict[int, int] = {}


def _sm_count(device: torch.device) -> int:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def _heuristic(n: int, k: int, device: torch.device) -> tuple[int, int, int, int, int]:
    """32-column tiles, split-K until there are ``PROGRAMS_PER_SM`` programs per SM."""
    block_k = 256 if k >= 256 else max(16, triton.next_power_of_2(k))
    want, split = PROGRAMS_PER_SM * _sm_count(device), 1
    while triton.cdiv(n, 32) * split < want and k // (2 * split) >= 4 * block_k:
        split *= 2
    return 32, block_k, 4, 4, split


def pick_config(m: int, n: int, k: int, device: torch.device) -> tuple[int, int, int, int, int, int]:
    """(block_m, block_n, block_k, num_warps, num_stages, split) for an ``[m, k] x [n, k]^T`` product."""
    if m > SMALL_M:
        return LARGE_BLOCK, LARGE_BLOCK, min(128, max(16, triton.next_power_of_2(k))), 4, 3, 1
    return (SMALL_M, *(TUNED.get((n, k)) or _heuristic(n, k, device)))


def fp8_linear(x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None,
               config: tuple[int, int, int, int, int, int] | None = None) -> torch.Tensor:
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
    block_m, block_n, block_k, warps, stages, split = config or pick_config(m, n, k, x.device)
    k_per_split = triton.cdiv(triton.cdiv(k, split), block_k) * block_k
    split = triton.cdiv(k, k_per_split)
    part = torch.empty(split, m, n, dtype=torch.float32, device=x.device) if split > 1 else out
    b = bias if bias is not None else scale
    grid = (triton.cdiv(n, block_n), triton.cdiv(m, block_m), split)
    _fp8_linear_kernel[grid](x, codes, scale, b, out, part, m, n, k, k_per_split, x.stride(0), codes.stride(0),
                             out.stride(0), HAS_BIAS=bias is not None, PARTIAL=split > 1, BLOCK_M=block_m,
                             BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=stages)
    if split > 1:
        _split_reduce_kernel[(triton.cdiv(n, REDUCE_BLOCK), m)](part, scale, b, out, m, n, split, out.stride(0),
                                                               HAS_BIAS=bias is not None, BLOCK=REDUCE_BLOCK)
    return out


def _graph_us(run, reps: int) -> float:
    """Microseconds per call of ``run``, ``reps`` calls replayed from one CUDA graph (no launch gaps)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        run()  # compile outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        for _ in range(reps):
            run()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / reps


@torch.no_grad()
def tune(codes: torch.Tensor, scale: torch.Tensor, rows: int, dtype: torch.dtype = torch.bfloat16) -> dict:
    """Time the candidate tiles/splits on this weight at ``rows`` rows (``TUNE_REPS`` calls in a CUDA graph) and
    keep the fastest for its shape in ``TUNED``; returns ``{"shape", "rows", "config", "us", "heuristic_us"}``."""
    n, k = codes.shape
    x = torch.randn(rows, k, device=codes.device, dtype=dtype)
    heuristic = _heuristic(n, k, codes.device)
    timings = {cand: _graph_us(lambda c=cand: fp8_linear(x, codes, scale, config=(SMALL_M, *c)), TUNE_REPS)
               for cand in dict.fromkeys((heuristic, *CANDIDATES))}
    best = min(timings, key=timings.get)
    TUNED[(n, k)] = best
    return {"shape": [n, k], "rows": rows, "config": list(best), "us": timings[best], "heuristic_us": timings[heuristic],
            "gb_per_s": codes.numel() / (timings[best] * 1e-6) / 1e9}
