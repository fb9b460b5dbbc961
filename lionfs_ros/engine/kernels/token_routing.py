"""A token-dropping layer's routing in three Triton launches (the static decoder's feeds of a few rows).

In torch a routed layer runs, besides the layer itself, some 15-20 small kernels (router norm and
linear, topk, scatter, cumsum, where, scatter, the gathers of h, residual, positions, cos and sin,
the slot writes, the scatter back, the add and the next norm). A decided frame's step has ~11 rows,
so each is a launch of a few microseconds; here they are three, each wide enough that its loads are in flight at
once (a single program doing all of it took 16.6 us a layer on an H200, its loads one chunk after another; the
eighth session's profile of lionfs-8b).

1. ``route``: ``_router_logits_kernel`` (one program per feed row, ``M <= MAX_ROWS``; where the layer's input norm
   is not computed yet, it computes it too, from the same sum of squares), then ``_route_kernel`` (one program per
   ``TILE // BLOCK_M`` columns of the gathered rows; each ranks the whole feed from the ``M`` logits):
   a. router logits, ``proj(RMSNorm(residual))`` (``model/token_dropping.TokenDroppingRouter``) with
      torch's arithmetic: the float32 mean of squares, ``x * rsqrt(ms + eps) * w`` in float32 rounded
      once to the model dtype (torch's fused ``rms_norm``; ``eps`` None means float32's epsilon), then a
      float32 dot with the projection plus its bias, rounded to the model dtype (a ``Linear``'s output).
      The two reductions add in another order than torch's, so a logit can differ from torch's in its
      last bit (float32) or by one rounding (bf16): only tokens that (nearly) tie at a frame's keep
      boundary can then be chosen differently. Exact ties are decided by the same rule as torch;
   b. each frame's top-``keep``: token ``i`` of frame ``f`` is kept iff fewer than ``keep`` tokens of ``f``
      rank before it, by logit (higher first), ties by sequence index (earlier first): the rule of
      ``model.token_dropping.frame_top`` (a stable descending sort; CUDA's topk keeps the same set).
      A pairwise ``[M, M]`` comparison: no sort. Text tokens (frame -1) are always kept;
   c. kept tokens in sequence order: ``dest = cumsum(kept) - 1``; kept row ``i`` is written at row ``dest[i]``
      of each output (``sel``, ``h``, ``residual``, ``pos``, ``cos``, ``sin``: the gathers), and the track's
      next slots ``fill[track] + dest`` get ``slot_pos[track, slot] = pos`` (the view's slot writes);
      ``dest_of [M]`` keeps ``dest`` (-1: dropped) for the way back.
2. ``merge`` (``_merge_kernel``, one program per stream row): the layer's output stream
   ``residual'[i] = residual_k[dest_of[i]] + mlp[dest_of[i]]`` for a kept row (the layer's last add), else
   ``residual[i]`` (a dropped token passes the layer); and the next layer's input RMSNorm of it (HF's
   LlamaRMSNorm arithmetic), for the last ``norm_rows`` rows (all of them, or the last one before the
   final norm).

No host sync, sizes from shapes: graph-capturable. The torch functions of ``engine/routing.py`` are the
reference (and run wherever this does not: no CUDA/Triton, long feeds).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .norm_math import llama_rms_scale

MAX_ROWS = 64  # feed rows the route kernels take (an [M, M] ranking in each program); longer feeds: torch
TILE = 8192  # elements of the [rows, columns] slice one route program gathers per tensor (all its loads at once)
LOGIT_BLOCK = 4096  # columns of a row the logits kernel holds at a time (a Llama-3-8B row in one load)
LOGIT_WARPS = 4
MERGE_BLOCK = 4096  # columns of a stream row the merge kernel holds at a time
ROUTE_WARPS = 4
MERGE_WARPS = 4
FLOAT32_EPS = torch.finfo(torch.float32).eps  # torch's rms_norm epsilon when the module's is None (float32 math)


@triton.jit
def _router_logits_kernel(res_ptr, nw_ptr, pw_ptr, pb_ptr, logit_ptr, eps, s_res, g_ptr, h_ptr, layer_eps,
                          HIDDEN: tl.constexpr, BLOCK_D: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_H: tl.constexpr):
    """One program per feed row: the router's logit ``proj(RMSNorm(residual[i]))`` into ``logit [M]`` (float32
    holding the model dtype's value); WRITE_H: also the layer's input norm of the row into ``h [M, HIDDEN]`` (HF's
    LlamaRMSNorm with weight ``g`` and ``layer_eps``), from the same sum of squares."""
    i = tl.program_id(0)
    dtype = res_ptr.dtype.element_ty
    squares = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for d0 in range(0, HIDDEN, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        x = tl.load(res_ptr + i * s_res + d, mask=d < HIDDEN, other=0.0).to(tl.float32)  # [BD]
        squares += x * x
    mean_square = tl.sum(squares, axis=0) / HIDDEN
    rstd = tl.math.rsqrt(mean_square + eps)
    layer_rstd = tl.math.rsqrt(mean_square + layer_eps)
    dot = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for d0 in range(0, HIDDEN, BLOCK_D):  # the row again (a cache hit): the norm's output rounded before the dot
        d = d0 + tl.arange(0, BLOCK_D)
        d_ok = d < HIDDEN
        x = tl.load(res_ptr + i * s_res + d, mask=d_ok, other=0.0).to(tl.float32)
        nw = tl.load(nw_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
        pw = tl.load(pw_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
        dot += ((x * rstd) * nw).to(dtype).to(tl.float32) * pw  # the norm's output, in the model dtype
        if WRITE_H:
            g = tl.load(g_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
            tl.store(h_ptr + i * HIDDEN + d, llama_rms_scale(x, layer_rstd, g, dtype), mask=d_ok)
    logit = tl.sum(dot, axis=0)
    if HAS_BIAS:
        logit += tl.load(pb_ptr).to(tl.float32)
    tl.store(logit_ptr + i, logit.to(dtype).to(tl.float32))  # the Linear's output, in the model dtype


@triton.jit(do_not_specialize=["M", "track", "keep"])
def _route_kernel(logit_ptr, res_ptr, h_ptr, pos_ptr, cos_ptr, sin_ptr, frame_ptr, sp_ptr, fill_ptr,
                  sel_ptr, dest_ptr, h_out, res_out, pos_out, cos_out, sin_out, slots_out,
                  M, track, keep, s_res, s_h, s_cos, s_sin, s_sp,
                  HIDDEN: tl.constexpr, ROT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
                  BLOCK_R: tl.constexpr):
    """Program ``p`` ranks the feed (every program, from the ``M`` logits: a few hundred comparisons) and gathers
    columns ``p * BLOCK_D ..`` of the kept rows of ``residual`` and ``h``; program 0 also writes the indices,
    positions, slots and the rotary rows."""
    p = tl.program_id(0)
    rows = tl.arange(0, BLOCK_M)  # [BM] the feed's tokens
    r_ok = rows < M
    logit = tl.load(logit_ptr + rows, mask=r_ok, other=0.0)  # [BM]
    # b. rank within the frame: higher logit first, ties by sequence index
    frame = tl.load(frame_ptr + rows, mask=r_ok, other=-1)  # [BM] -1: text (always kept)
    same = (frame[None, :] == frame[:, None]) & r_ok[None, :]  # [BM, BM]: j is in i's frame
    ahead = (logit[None, :] > logit[:, None]) | ((logit[None, :] == logit[:, None]) & (rows[None, :] < rows[:, None]))
    rank = tl.sum((same & ahead).to(tl.int32), axis=1)  # [BM]
    kept = r_ok & ((frame < 0) | (rank < keep))
    # c. kept rows in sequence order: this program's columns of the gathered rows
    dest = tl.cumsum(kept.to(tl.int32), axis=0) - 1  # [BM]
    d = p * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = (d < HIDDEN)[None, :]
    x = tl.load(res_ptr + rows[:, None] * s_res + d[None, :], mask=r_ok[:, None] & d_ok)
    y = tl.load(h_ptr + rows[:, None] * s_h + d[None, :], mask=r_ok[:, None] & d_ok)
    tl.store(res_out + dest[:, None] * HIDDEN + d[None, :], x, mask=kept[:, None] & d_ok)
    tl.store(h_out + dest[:, None] * HIDDEN + d[None, :], y, mask=kept[:, None] & d_ok)
    if p == 0:  # indices, positions, slots, rotary rows
        tl.store(sel_ptr + dest, rows.to(tl.int64), mask=kept)
        tl.store(dest_ptr + rows, tl.where(kept, dest, -1), mask=r_ok)
        pos = tl.load(pos_ptr + rows, mask=r_ok, other=0)
        slot = tl.load(fill_ptr + track) + dest
        tl.store(pos_out + dest, pos, mask=kept)
        tl.store(slots_out + dest, slot, mask=kept)
        tl.store(sp_ptr + track * s_sp + slot, pos, mask=kept)
        c = tl.arange(0, BLOCK_R)
        c_ok = (c < ROT)[None, :]
        rot_cos = tl.load(cos_ptr + rows[:, None] * s_cos + c[None, :], mask=r_ok[:, None] & c_ok)
        tl.store(cos_out + dest[:, None] * ROT + c[None, :], rot_cos, mask=kept[:, None] & c_ok)
        rot_sin = tl.load(sin_ptr + rows[:, None] * s_sin + c[None, :], mask=r_ok[:, None] & c_ok)
        tl.store(sin_out + dest[:, None] * ROT + c[None, :], rot_sin, mask=kept[:, None] & c_ok)


@triton.jit
def _merged_row(res_ptr, resk_ptr, mlp_ptr, i, j, d, s_res, s_resk, s_mlp, HIDDEN: tl.constexpr):
    """Columns ``d`` of stream row ``i`` after the layer: ``residual_k[j] + mlp[j]`` (in the model dtype) if kept
    as row ``j``, else ``residual[i]``."""
    d_ok = d < HIDDEN
    take = (d * 0 + j) >= 0  # [BD]: the row is kept
    src = tl.maximum(j, 0)
    passed = tl.load(res_ptr + i * s_res + d, mask=d_ok & ~take, other=0.0)
    layer = (tl.load(resk_ptr + src * s_resk + d, mask=d_ok & take, other=0.0).to(tl.float32)
             + tl.load(mlp_ptr + src * s_mlp + d, mask=d_ok & take, other=0.0).to(tl.float32))
    return tl.where(take, layer.to(passed.dtype), passed)


@triton.jit(do_not_specialize=["norm_from"])
def _merge_kernel(res_ptr, resk_ptr, mlp_ptr, dest_ptr, w_ptr, out_ptr, h_ptr, norm_from, eps,
                  s_res, s_resk, s_mlp, HIDDEN: tl.constexpr, BLOCK_D: tl.constexpr):
    i = tl.program_id(0)  # the stream row
    j = tl.load(dest_ptr + i)  # its row among the layer's kept tokens, -1: dropped
    squares = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for d0 in range(0, HIDDEN, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        x = _merged_row(res_ptr, resk_ptr, mlp_ptr, i, j, d, s_res, s_resk, s_mlp, HIDDEN)  # [BD] after the layer
        tl.store(out_ptr + i * HIDDEN + d, x, mask=d < HIDDEN)
        x = x.to(tl.float32)
        squares += x * x
    if i >= norm_from:  # this row's norm is needed
        rstd = tl.math.rsqrt(tl.sum(squares, axis=0) / HIDDEN + eps)
        for d0 in range(0, HIDDEN, BLOCK_D):  # the row again from its sources (no read of what this program wrote)
            d = d0 + tl.arange(0, BLOCK_D)
            d_ok = d < HIDDEN
            x = _merged_row(res_ptr, resk_ptr, mlp_ptr, i, j, d, s_res, s_resk, s_mlp, HIDDEN).to(tl.float32)
            w = tl.load(w_ptr + d, mask=d_ok, other=0.0)
            dtype = w.dtype
            tl.store(h_ptr + (i - norm_from) * HIDDEN + d, llama_rms_scale(x, rstd, w.to(tl.float32), dtype),
                     mask=d_ok)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(1, n))


def route(residual: torch.Tensor, h: torch.Tensor | None, pos: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
          frame_of: torch.Tensor, keep: int, kept: int, router, slot_pos: torch.Tensor, fill: torch.Tensor,
          track: int, layer_norm: tuple | None = None) -> tuple[torch.Tensor, ...]:
    """``residual``/``h`` ``[M, d]``, ``pos [M]``, ``cos``/``sin`` ``[1, M, D]``, ``frame_of [M]`` (-1: text) ->
    ``(sel [K], dest_of [M], h[sel], residual[sel], pos[sel], cos[:, sel], sin[:, sel], slots [K])`` with
    ``K = kept``; writes ``slot_pos[track, slots] = pos[sel]`` (``slot_pos [tracks, cap]``, ``fill [tracks]``).
    ``router``: a ``TokenDroppingRouter`` (its RMSNorm and Linear d -> 1). ``h`` None: the layer's input norm
    ``h = rms_norm(residual, *layer_norm)`` (``(weight, eps)``) is computed here, in the logits' launch."""
    m, hidden = residual.shape
    rot = cos.shape[-1]
    if m > MAX_ROWS:
        raise ValueError(f"a feed of {m} rows: the route kernel takes <= {MAX_ROWS}")
    if (h is None) == (layer_norm is None):
        raise ValueError("route: give either the layer's normalized rows h or its norm (weight, eps), not both")
    write_h = h is None
    if write_h:
        h = torch.empty_like(residual)
    for name, t in (("residual", residual), ("h", h), ("cos", cos), ("sin", sin), ("slot_pos", slot_pos)):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} needs a contiguous last dimension")
    norm, proj = router.norm, router.proj
    eps = FLOAT32_EPS if norm.eps is None else norm.eps
    block_m, dev = _pow2(m), residual.device
    block_d = min(_pow2(hidden), max(16, TILE // block_m))
    logit = torch.empty(m, dtype=torch.float32, device=dev)
    sel = torch.empty(kept, dtype=torch.long, device=dev)
    dest_of = torch.empty(m, dtype=torch.int32, device=dev)
    h_k, res_k = h.new_empty(kept, hidden), residual.new_empty(kept, hidden)
    pos_k, slots = torch.empty_like(sel), torch.empty_like(sel)
    cos_k, sin_k = cos.new_empty(1, kept, rot), sin.new_empty(1, kept, rot)
    bias = proj.bias if proj.bias is not None else proj.weight  # not read without a bias
    g, layer_eps = layer_norm if write_h else (norm.weight, 0.0)  # g not read without write_h
    _router_logits_kernel[(m,)](residual, norm.weight, proj.weight, bias, logit, eps, residual.stride(0), g, h,
                                float(layer_eps), HIDDEN=hidden, BLOCK_D=min(_pow2(hidden), LOGIT_BLOCK),
                                HAS_BIAS=proj.bias is not None, WRITE_H=write_h, num_warps=LOGIT_WARPS)
    _route_kernel[(triton.cdiv(hidden, block_d),)](
        logit, residual, h, pos.contiguous(), cos, sin, frame_of, slot_pos, fill,
        sel, dest_of, h_k, res_k, pos_k, cos_k, sin_k, slots, m, track, keep,
        residual.stride(0), h.stride(0), cos.stride(-2), sin.stride(-2), slot_pos.stride(0),
        HIDDEN=hidden, ROT=rot, BLOCK_M=block_m, BLOCK_D=block_d, BLOCK_R=_pow2(rot), num_warps=ROUTE_WARPS)
    return sel, dest_of, h_k, res_k, pos_k, cos_k, sin_k, slots


def merge(residual: torch.Tensor, residual_k: torch.Tensor, mlp: torch.Tensor, dest_of: torch.Tensor,
          weight: torch.Tensor, eps: float, norm_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The stream after a routed layer and its next norm: ``residual [M, d]`` with kept rows replaced by
    ``residual_k + mlp`` (``[K, d]``, row ``dest_of[i]`` for stream row ``i``) -> ``(stream [M, d],
    rms_norm(stream[-norm_rows:]) [norm_rows, d])``."""
    m, hidden = residual.shape
    for name, t in (("residual", residual), ("residual_k", residual_k), ("mlp", mlp)):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} needs a contiguous last dimension")
    if weight.dtype != residual.dtype:
        raise ValueError(f"a {weight.dtype} norm weight on a {residual.dtype} stream")
    out = torch.empty(m, hidden, dtype=residual.dtype, device=residual.device)
    h = torch.empty(norm_rows, hidden, dtype=residual.dtype, device=residual.device)
    _merge_kernel[(m,)](residual, residual_k, mlp, dest_of, weight, out, h, m - norm_rows, eps,
                        residual.stride(0), residual_k.stride(0), mlp.stride(0),
                        HIDDEN=hidden, BLOCK_D=min(_pow2(hidden), MERGE_BLOCK), num_warps=MERGE_WARPS)
    return out, h
