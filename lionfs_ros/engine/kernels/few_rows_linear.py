"""The static backend's linear layer for a few rows: ``out = (x @ W.T) * s + b`` with ``W [N, K]`` either FP8 e4m3
codes with one float32 scale ``s [N]`` per output channel (weight-only FP8) or the model's own bf16/fp16 weight (no
scale: ``s`` is 1).

At 1 to 16 rows per step (a generated token, a decided frame) a product reads its whole weight matrix and does
almost no arithmetic: it is bound by memory bandwidth, and at these shapes cuBLAS reads bf16 weights at ~3.1 TB/s
of the H200's 4.8. One program computes a ``BLOCK_M x BLOCK_N`` tile of the output over one slice of the input
dim: it walks its slice in ``BLOCK_K`` steps, loads the activations and the weight tile, upcasts FP8 codes in
registers and accumulates in float32: ``tl.dot`` on the tensor cores, or, with ``BLOCK_M == 1`` (a generated
token), products summed on the CUDA cores over ``k`` at every step into a ``[BLOCK_N]`` accumulator (no 16-row dot
padding; a wide ``BLOCK_K``, up to 1,024, keeps few steps and many bytes in flight, the steps' loads pipelined by
``num_stages``). A narrow matrix (4,096 outputs) gives too few
column tiles to keep every SM's memory pipeline busy: split-K cuts the input dim into ``split`` slices, one program
each, all in ONE launch. Each slice stores its float32 partial sum, then bumps its tile's counter (an atomic,
release: the partial is visible before the count); the program that finds the count at ``split - 1`` is the
tile's last: it adds the ``split`` partials in slice order (the same sum whoever comes last: deterministic),
scales, adds the bias, stores, and sets the counter back to 0 for the next call.

``fused_few_rows_linear`` folds a decoder sublayer's neighbours into the product (``static_decoder``'s
``fold_norms``): ``residual=`` adds the residual stream in that last step (rounded as HF adds) and stores the
tile's per-row sums of squares of the result; ``norm=`` takes such sums from the product before and applies the
RMSNorm (HF's arithmetic: normalized in float32, rounded, times the weight, rounded) to the activations as they
are loaded, so the add + norm kernel between two products is gone. Where the norm's weight was multiplied into the
weight matrix's columns beforehand (weight-only FP8 codes, made once), ``norm=`` with no weight leaves the loop alone:
the raw stream is multiplied and each output row is scaled by its ``rstd`` after the sum.

The counters live in a buffer per (device, CUDA stream), zero between calls: calls on one stream run one
after the other, and a CUDA graph bakes in the buffer of the stream it was captured on (the engine gives
each graph owner its own capture stream, as for cuBLAS's workspaces), so graphs replayed at the same time
from two threads do not share counters. Tiles, split, the FP8 upcast (``_upcast``: Triton's conversion, or
bit moves that avoid the slow conversion instructions) and the tensor-core path's operand order (``SWAP_OPERANDS``:
the weight tile on the dot's left) and, where each row's ``rstd`` is known (``norm=(None, ...)``), fp16 operands
(``FP16_OPERANDS``: each row scaled by a power of two so its cast is exact, the FP8 codes converted two at a time by
one instruction, where bf16 takes the bit moves' three a code) are picked per weight shape, weight dtype and row bucket
(one row: a generated token; up to ``SMALL_M``: a decided frame) on the GPU when the engine is built
(``few_rows_tuning.tune``), timed on the layers' own weights in a CUDA graph; a candidate whose product differs from
float32's is rejected.
For a bf16/fp16 weight cuBLAS (``F.linear``) is one of the candidates (``CUBLAS``): the kernel runs only on the
shapes where it is faster.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .dependent_launch import launch_options, wait_for_previous
from .norm_math import llama_rms_scale

SMALL_M = 16  # rows up to this: one row block (a decided frame, a generated token)
LARGE_BLOCK = 64  # row and column block for longer feeds (prompts): those are rare and not latency-critical
PROGRAMS_PER_SM = 2  # the heuristic aims for at least this many programs per SM
BIT_MOVES, SWAP_OPERANDS, FP16_OPERANDS = 1, 2, 4  # a config's flags (below ``TUNED``)
MAX_EXPONENT = tl.constexpr(100)  # |log2| of the fp16 path's row scale at most this (rows of zeros: 1 / sqrt(eps))
COUNTER_SLOTS = 4096  # tile counters per stream (grown when a call has more tiles)
_COUNTERS: dict[tuple[str, int], torch.Tensor] = {}


@triton.jit
def _finish(acc, rows, cols, row_ok, col_ok, ok, s_ptr, b_ptr, out_ptr, stride_om, res_ptr, stride_rm, sq_ptr, pid_n,
            M, N, rstd, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, RESIDUAL: tl.constexpr,
            ROW_SCALE: tl.constexpr, GATE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """acc [BM, BN] float32 -> out: ROW_SCALE: times the input RMSNorm's ``rstd [BM]`` (the norm's weight is in the
    weight matrix); times the channel scale (FP8 codes), plus the bias, cast. RESIDUAL: plus the residual stream's
    tile, rounded again (HF's ``residual + x`` in the model dtype), and the tile's sum of squares of that per row
    into ``sq [pid_n, M]`` (the next RMSNorm's statistics, summed by its consumer). GATE: the columns are (gate, up)
    pairs; each pair, rounded as the product's outputs, gives ``silu(gate) * up`` (in float32, rounded once, as the
    compiled gate does) at column ``j`` of ``out [M, N / 2]``."""
    if ROW_SCALE:
        acc = acc * rstd[:, None]
    if HAS_SCALE:
        acc = acc * tl.load(s_ptr + cols, mask=col_ok, other=0.0)[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if GATE:
        gate, up = tl.split(tl.reshape(acc, (BLOCK_M, BLOCK_N // 2, 2)))  # [BM, BN / 2] each
        gate = gate.to(out_ptr.dtype.element_ty).to(tl.float32)
        up = up.to(out_ptr.dtype.element_ty).to(tl.float32)
        half = pid_n * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)  # [BN / 2] the output's columns
        half_ok = row_ok[:, None] & (half < N // 2)[None, :]
        act = (gate * tl.sigmoid(gate) * up).to(out_ptr.dtype.element_ty)
        tl.store(out_ptr + rows[:, None] * stride_om + half[None, :], act, mask=half_ok)
        return
    out = acc.to(out_ptr.dtype.element_ty)
    if RESIDUAL:
        res = tl.load(res_ptr + rows[:, None] * stride_rm + cols[None, :], mask=ok, other=0.0)
        out = (out.to(tl.float32) + res.to(tl.float32)).to(out_ptr.dtype.element_ty)
        summed = tl.where(ok, out.to(tl.float32), 0.0)
        tl.store(sq_ptr + pid_n * M + rows, tl.sum(summed * summed, axis=1), mask=row_ok)
    tl.store(out_ptr + rows[:, None] * stride_om + cols[None, :], out, mask=ok)


@triton.jit
def _normed(x, k, k_ok, rstd, g_ptr, NORM: tl.constexpr):
    """NORM: the activations ``x [BM, BK]`` through the RMSNorm with per-row ``rstd [BM]`` and weight ``g`` (HF's
    LlamaRMSNorm arithmetic: normalized in float32, rounded, times the weight, rounded); else ``x``."""
    if NORM:
        g = tl.load(g_ptr + k, mask=k_ok, other=0.0).to(tl.float32)
        x = llama_rms_scale(x.to(tl.float32), rstd[:, None], g[None, :], x.dtype)
    return x


@triton.jit
def _upcast(w, dtype: tl.constexpr, BITS: tl.constexpr):
    """The weight tile -> ``dtype`` (a bf16/fp16 weight: a no-op or a plain cast). FP8 e4m3 codes: Triton's
    conversion takes 1.5 conversion instructions per code (e4m3x2 ->
    f16x2, then f16 -> bf16 one by one), which issue at 16 per clock per SM: about 2.8 TB/s of codes on an H200,
    where the old kernel measured 2.7. BITS (bf16 activations) avoids them: per 4 codes, each byte is moved to the
    top of a 16-bit lane (prmt), its exponent and mantissa shifted into bf16's places with the sign kept, and the
    pair multiplied by 2^120 (0x7B80: the exponent biases' difference, 127 - 7) in bf16x2 (an fma adding -0, which
    Ampere and Ada have too): exact for every code, subnormals included."""
    if BITS:
        out = tl.inline_asm_elementwise(
            """{
            .reg .b32 z, k, nz, lo, hi, slo, shi;
            mov.b32 z, 0;
            mov.b32 k, 0x7B807B80;
            mov.b32 nz, 0x80008000;
            prmt.b32 lo, $2, z, 0x1404;
            prmt.b32 hi, $2, z, 0x3424;
            shr.b32 slo, lo, 4;
            shr.b32 shi, hi, 4;
            and.b32 lo, lo, 0x80008000;
            and.b32 hi, hi, 0x80008000;
            and.b32 slo, slo, 0x07F007F0;
            and.b32 shi, shi, 0x07F007F0;
            or.b32 lo, lo, slo;
            or.b32 hi, hi, shi;
            fma.rn.bf16x2 $0, lo, k, nz;
            fma.rn.bf16x2 $1, hi, k, nz;
            }""", "=r,=r,r", [w.to(tl.uint8, bitcast=True)], dtype=tl.bfloat16, is_pure=True, pack=4).to(dtype)
    else:
        out = w.to(dtype)
    return out


@triton.jit
def _pow2(e):
    """``2^e`` in float32, exact, for int32 ``e`` in [-126, 127] (the exponent field written directly)."""
    return ((e + 127) << 23).to(tl.float32, bitcast=True)


@triton.jit(do_not_specialize=["M", "stat_t"])
def _few_rows_kernel(x_ptr, w_ptr, s_ptr, b_ptr, out_ptr, part_ptr, count_ptr, M, N, K, k_per_split, stride_xm,
                     stride_wn, stride_om, g_ptr, stat_ptr, stat_t, eps, res_ptr, stride_rm, sq_ptr,
                     HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr,
                     BITS: tl.constexpr, SWAP: tl.constexpr, F16: tl.constexpr, BLOCK_M: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                     NORM: tl.constexpr, ROW_SCALE: tl.constexpr, STAT_BLOCK: tl.constexpr, RESIDUAL: tl.constexpr,
                     GATE: tl.constexpr, PDL: tl.constexpr):
    wait_for_previous(PDL)
    pid_k = tl.program_id(0)  # the slices of one tile are launched next to each other
    pid_n = tl.program_id(1)
    pid_m = tl.program_id(2)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    ks = tl.arange(0, BLOCK_K)  # [BK]
    row_ok = rows < M
    col_ok = cols < N
    k_start = pid_k * k_per_split
    k_end = tl.minimum(k_start + k_per_split, K)
    rstd = tl.zeros((BLOCK_M,), dtype=tl.float32)
    if NORM or ROW_SCALE:  # the input RMSNorm's statistics: the producer's per-tile sums of squares [stat_t, M]
        ts = tl.arange(0, STAT_BLOCK)
        sq = tl.load(stat_ptr + ts[:, None] * M + rows[None, :], mask=(ts < stat_t)[:, None] & row_ok[None, :],
                     other=0.0)  # [ST, BM]
        rstd = tl.math.rsqrt(tl.sum(sq, axis=0) / K + eps)  # [BM]
    if BLOCK_M == 1:  # one row: [BN, BK] products on the CUDA cores, summed over k at each step
        acc1 = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for k0 in range(k_start, k_end, BLOCK_K):
            k = k0 + ks
            k_ok = k < k_end  # K and the slices are multiples of 16: the loads stay 16-byte vectors
            x = tl.load(x_ptr + rows[:, None] * stride_xm + k[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            x = _normed(x, k, k_ok, rstd, g_ptr, NORM)
            w = tl.load(w_ptr + cols[:, None] * stride_wn + k[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
            acc1 += tl.sum(_upcast(w, tl.float32, BITS) * x.to(tl.float32), axis=1)  # [BN, BK] * [1, BK] -> [BN]
        acc = acc1[None, :]  # [1, BN]
    else:
        if F16:  # fp16 operands (ROW_SCALE only): each row times 2^-e, e = floor(log2(1 / rstd)), so its largest
            # value is under 2 sqrt(K) and the cast is exact; the codes by one conversion per pair; undone after the sum
            e = tl.minimum(tl.maximum(tl.floor(-tl.log2(rstd)), -MAX_EXPONENT), MAX_EXPONENT).to(tl.int32)  # [BM]
            to_f16 = _pow2(-e)  # [BM]
        if SWAP:  # the weight tile as the dot's left operand, the activations as its narrow right one
            acc_t = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        else:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(k_start, k_end, BLOCK_K):
            k = k0 + ks
            k_ok = k < k_end  # K and the slices are multiples of 16: the loads stay 16-byte vectors
            x = tl.load(x_ptr + rows[:, None] * stride_xm + k[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            x = _normed(x, k, k_ok, rstd, g_ptr, NORM)
            w = tl.load(w_ptr + cols[:, None] * stride_wn + k[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
            if F16:
                x16 = (x.to(tl.float32) * to_f16[:, None]).to(tl.float16)
                acc += tl.dot(x16, tl.trans(w.to(tl.float16)))  # [BM, BK] @ [BK, BN]
            elif SWAP:
                acc_t += tl.dot(_upcast(w, x.dtype, BITS), tl.trans(x))  # [BN, BK] @ [BK, BM]
            else:
                acc += tl.dot(x, tl.trans(_upcast(w, x.dtype, BITS)))  # [BM, BK] @ [BK, BN]
        if SWAP:
            acc = tl.trans(acc_t)
        if F16:
            acc = acc * _pow2(e)[:, None]  # times 2^e: the rows' own scale
    ok = row_ok[:, None] & col_ok[None, :]
    if SPLIT_K:
        split = tl.num_programs(0)
        tile = pid_m * tl.num_programs(1) + pid_n
        part = part_ptr + rows[:, None] * N + cols[None, :]  # part [split, M, N] float32: each slice's sum, unscaled
        tl.store(part + pid_k * M * N, acc, mask=ok)
        tl.debug_barrier()  # every thread's partial is written before the count says so
        done = tl.atomic_add(count_ptr + tile, 1, sem="acq_rel", scope="gpu")  # slices of this tile done before
        if done == split - 1:  # the tile's last slice: the others' partials are visible (acquire)
            total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for i in range(0, split):  # fixed order: the same sum on every run
                total += tl.load(part + i * M * N, mask=ok, other=0.0, cache_modifier=".cg")
            tl.store(count_ptr + tile, 0)  # ready for the next call on this stream
            _finish(total, rows, cols, row_ok, col_ok, ok, s_ptr, b_ptr, out_ptr, stride_om, res_ptr, stride_rm, sq_ptr,
                    pid_n, M, N, rstd, HAS_SCALE, HAS_BIAS, RESIDUAL, ROW_SCALE, GATE, BLOCK_M, BLOCK_N)
    else:
        _finish(acc, rows, cols, row_ok, col_ok, ok, s_ptr, b_ptr, out_ptr, stride_om, res_ptr, stride_rm, sq_ptr,
                pid_n, M, N, rstd, HAS_SCALE, HAS_BIAS, RESIDUAL, ROW_SCALE, GATE, BLOCK_M, BLOCK_N)


def tile_counters(tiles: int, device: torch.device) -> torch.Tensor:
    """The current stream's split-K tile counters (int32, all zero between calls; on the CPU, for Triton's
    interpreter, one buffer). During a CUDA-graph capture with none made yet for the stream, a zeroed buffer is
    made inside the graph (its memset replays with it) and not kept."""
    stream = torch.cuda.current_stream(device) if device.type == "cuda" else None
    key = (str(device), stream.cuda_stream if stream is not None else 0)
    have = _COUNTERS.get(key)
    if have is not None and have.numel() >= tiles:
        return have
    fresh = torch.zeros(max(tiles, COUNTER_SLOTS), dtype=torch.int32, device=device)
    if stream is None or not torch.cuda.is_current_stream_capturing():
        _COUNTERS[key] = fresh
    return fresh


# (block_m, block_n, block_k, num_warps, num_stages, split, flags) by (N, K, row bucket, weight bytes per element),
# chosen by ``few_rows_tuning.tune`` on this GPU when the engine is built; a shape not tuned takes ``_heuristic``. flags:
# ``SWAP_OPERANDS`` = the tensor-core path computes ``W x^T`` (the weight tile as the dot's left operand: Hopper's
# wgmma takes that one from registers, where the upcast leaves it); ``FP16_OPERANDS`` = fp16 dots on FP8 codes where
# the call gives each row's rstd (``norm=(None, ...)``; elsewhere the flag changes nothing); ``BIT_MOVES`` =
# ``_upcast`` without conversion instructions (FP8 codes and bf16 activations; elsewhere 0 runs). ``CUBLAS``: this
# bf16/fp16 shape runs ``F.linear`` (it was faster than every tile tried).
Config = tuple[int, int, int, int, int, int, int]
CUBLAS = "cublas"
TUNED: dict[tuple[int, int, int, int], Config | str] = {}
_SM_COUNT: dict[int, int] = {}


def _sm_count(device: torch.device) -> int:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def bucket(m: int) -> int:
    """The row bucket tiles are tuned for: 1 (a generated token) or ``SMALL_M`` (2..16 rows)."""
    return 1 if m == 1 else SMALL_M


def _heuristic(n: int, k: int, device: torch.device) -> Config:
    """16x32 tiles, split-K until there are ``PROGRAMS_PER_SM`` programs per SM."""
    block_k = 256 if k >= 256 else max(16, triton.next_power_of_2(k))
    want, split = PROGRAMS_PER_SM * _sm_count(device), 1
    while triton.cdiv(n, 32) * split < want and k // (2 * split) >= 4 * block_k:
        split *= 2
    return SMALL_M, 32, block_k, 4, 4, split, 0


def tuned_key(m: int, weight: torch.Tensor) -> tuple[int, int, int, int]:
    """``TUNED``'s key of an ``[m, K] x weight [N, K]^T`` product."""
    return (*weight.shape, bucket(m), weight.element_size())


def pick_config(m: int, weight: torch.Tensor) -> Config | str:
    """(block_m, block_n, block_k, num_warps, num_stages, split, flags), or ``CUBLAS``, for ``[m, K] x weight^T``: the
    tuned pick; else, for FP8 codes, ``LARGE_BLOCK`` tiles past ``SMALL_M`` rows and the heuristic below; for a
    bf16/fp16 weight, cuBLAS."""
    n, k = weight.shape
    fp8 = weight.dtype == torch.float8_e4m3fn
    if m > SMALL_M:
        return (LARGE_BLOCK, LARGE_BLOCK, min(128, max(16, triton.next_power_of_2(k))), 4, 3, 1, 0) if fp8 else CUBLAS
    return TUNED.get(tuned_key(m, weight)) or (_heuristic(n, k, weight.device) if fp8 else CUBLAS)


def few_rows_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None, config: Config | str | None = None,
                    gate: bool = False) -> torch.Tensor:
    """``x [M, K]`` (bf16/fp16) times ``weight [N, K]`` -> ``[M, N]`` in ``x``'s dtype: FP8 codes with their
    ``scale [N]``, or a weight of ``x``'s dtype (no scale). ``config``: the tiles (default ``pick_config``'s).
    ``gate``: the weight's rows are (gate, up) pairs: the output is ``silu(gate) * up`` ``[M, N / 2]`` (the kernel
    only)."""
    _check_operands(x, weight, scale)
    config = config or pick_config(max(x.shape[0], 1), weight)
    if config == CUBLAS:
        if gate:
            raise ValueError("few_rows_linear: the pick for this shape is cuBLAS; apply the gate outside")
        return F.linear(x, weight, bias)
    return _launch(x, weight, scale, bias, config, gate=gate)[0]


def fused_few_rows_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None = None,
                          bias: torch.Tensor | None = None, norm: tuple | None = None,
                          residual: torch.Tensor | None = None, config: Config | None = None,
                          gate: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``few_rows_linear`` with the sublayer's neighbours folded in (the kernel only: ``config`` or the pick must not be
    ``CUBLAS``):
    - ``norm = (weight [K], sums [T, M] float32, eps)``: ``x`` is the residual stream and is put through that RMSNorm
      on the way in, its statistics the ``T`` partial sums of squares a ``residual=`` call returned (the decoder uses
      it in the one-row path only: in the tensor-core path the work between the activations' load and the product
      stopped Triton pipelining the loop); ``norm = (None, sums, eps)``: the norm's weight is already in ``W``'s
      columns (``W diag(g)``): the raw stream is multiplied and each output row scaled by its ``rstd`` after the sum
      (any path; not HF's rounding: the normalized activations are not rounded before the product);
    - ``residual [M, N]``: the output is ``residual + x @ W.T`` (each rounded to the model dtype, as HF adds), and the
      second value returned is its per-tile sums of squares ``[T, M]`` (for the next norm), else None;
    - ``gate``: as ``few_rows_linear``'s."""
    _check_operands(x, weight, scale)
    config = config or pick_config(max(x.shape[0], 1), weight)
    if config == CUBLAS:
        raise ValueError("fused_few_rows_linear: the pick for this shape is cuBLAS; fold the norm and the add outside")
    if residual is not None and (residual.shape != (x.shape[0], weight.shape[0]) or residual.stride(-1) != 1):
        raise ValueError(f"fused_few_rows_linear: residual {tuple(residual.shape)} is not a contiguous [M, N] stream")
    return _launch(x, weight, scale, bias, config, norm, residual, gate)


def _check_operands(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None) -> None:
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"few_rows_linear: x {tuple(x.shape)} and weight {tuple(weight.shape)} do not match")
    if (scale is None) != (weight.dtype != torch.float8_e4m3fn):
        raise ValueError(f"few_rows_linear: FP8 codes need their scale, a {weight.dtype} weight takes none")


def _launch(x, weight, scale, bias, config: Config, norm=None, residual=None, gate: bool = False):
    """One launch of the kernel with ``config``'s tiles (operands checked) -> ``(out [M, N] (gate: [M, N / 2]), sums
    [T, M] or None)``."""
    if x.stride(1) != 1:
        x = x.contiguous()
    m, k = x.shape
    n = weight.shape[0]
    block_m, block_n, block_k, warps, stages, split, flags = config
    if gate and (n % 2 or block_n % 2 or residual is not None):
        raise ValueError(f"few_rows_linear: the gate needs (gate, up) row pairs in even tiles, no residual (N {n},"
                         f" BLOCK_N {block_n})")
    out = torch.empty(m, n // 2 if gate else n, dtype=x.dtype, device=x.device)
    grid_n = triton.cdiv(n, block_n)
    sums = torch.empty(grid_n, m, dtype=torch.float32, device=x.device) if residual is not None else None
    if m == 0:
        return out, sums
    k_per_split = triton.cdiv(triton.cdiv(k, split), block_k) * block_k
    split = triton.cdiv(k, k_per_split)
    grid = (split, grid_n, triton.cdiv(m, block_m))
    if split > 1:
        part = torch.empty(split, m, n, dtype=torch.float32, device=x.device)
        count = tile_counters(grid[1] * grid[2], x.device)
    else:
        part = count = out  # not read
    g, stats, eps = norm if norm is not None else (out, out, 0.0)  # not read without a norm
    row_scale = norm is not None and g is None  # the norm's weight is in ``weight``: only rstd, on the output
    if norm is not None and (stats.dtype != torch.float32 or stats.shape[1] != m or not stats.is_contiguous()):
        raise ValueError(f"fused_few_rows_linear: the norm's sums must be contiguous float32 [T, {m}]")
    fp8 = scale is not None
    f16 = (bool(flags & FP16_OPERANDS) and fp8 and row_scale and block_m > 1
           and x.dtype in (torch.bfloat16, torch.float16))  # fp16 operands: rows of known rstd on the tensor cores
    _few_rows_kernel[grid](x, weight, scale if fp8 else out, bias if bias is not None else out, out, part, count, m,
                           n, k, k_per_split, x.stride(0), weight.stride(0), out.stride(0),
                           out if row_scale else g, stats, stats.shape[0] if norm is not None else 0, float(eps),
                           residual if residual is not None else out, out.stride(0) if residual is None else
                           residual.stride(0), sums if sums is not None else out,
                           HAS_SCALE=fp8, HAS_BIAS=bias is not None, SPLIT_K=split > 1,
                           BITS=bool(flags & BIT_MOVES) and fp8 and x.dtype == torch.bfloat16,
                           SWAP=bool(flags & SWAP_OPERANDS) and block_m > 1 and not f16, F16=f16,
                           BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, NORM=norm is not None and not row_scale,
                           ROW_SCALE=row_scale,
                           STAT_BLOCK=triton.next_power_of_2(stats.shape[0]) if norm is not None else 1,
                           RESIDUAL=residual is not None, GATE=gate, num_warps=warps, num_stages=stages,
                           **launch_options(x.device))
    return out, sums
