"""Decode attention over slot-masked KV buffers (flash-decoding: split-K over the keys, then a reduction).

For each batch row ``b`` and K/V head ``h``: ``softmax(q k^T * scale + mask) v`` where key slot ``s`` is
visible to query ``i`` iff ``slot_pos[rows[b], track, s] <= pos[b, i]`` (an empty slot holds
``POSITION_SENTINEL``: always hidden). The mask is never materialized: the kernel compares positions
as it loads a key block. The ``g`` query heads sharing one K/V head are stacked along the query
length (``R = g * M`` rows, row ``r`` is position ``r % M`` of query head ``h * g + r // M``): one program reads
each key block once for all of them. Queries are read and outputs written in the ``[B, M, H_q, D]`` layout of the
q/k/v product and of the output projection's input, through strides: no transpose copies around the kernel.

Rows index a pool ``[N, H_kv, cap, D]`` (``batched_step.KVPool``: N = streams + scratch) through
``rows [B]``: no gather copy; a single state is the pool of one row. Each row reads only its slots
``0 .. fill + M`` (``fill [N, tracks]`` read on the device, so a CUDA graph captured at one capacity
costs what is filled: programs past the fill return at once, and the reduction stops at the last
filled split).

One launch, grid ``(splits, B * H_kv, query blocks)``: one program walks its split's keys in ``BLOCK_N``
blocks with an online softmax (float32 running max ``m``, sum ``l`` and unnormalized output ``acc``),
stores ``m``, ``l``, ``acc`` of its split, then bumps its (row, head, query block)'s counter (an atomic,
release: the partials are visible before the count). The program that finds the count at ``filled - 1``
(the splits below the fill) is the last: it rescales the filled splits to one max, adds them in split
order (the same sum whoever comes last: deterministic), divides by the total sum, stores the output and
sets the counter back to 0. The counters are the few-rows linear kernel's per-stream buffer
(``few_rows_linear.tile_counters``: zero between calls, one buffer per CUDA stream, baked into a graph
captured on that stream).

Feeds of at most ``MAX_ROWS`` stacked query rows run here (a decided frame: ``g * (interval + tokens)``,
a generated token: ``g``); longer ones (prompts, questions: rare, with enough rows to fill the GPU as a
plain matrix product) take the split path (``static_decoder``): their float32 partials would grow with
rows x splits, and the split-K scheme brings nothing there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .dependent_launch import launch_options, wait_for_previous
from .few_rows_linear import tile_counters

MAX_ROWS = 128  # stacked query rows (g * M) per K/V head the kernel takes; more: the split path
MAX_BLOCK_Q = 64  # query rows per program
SMALL_ROWS = 64  # up to this many stacked rows (a decided frame, a token): query blocks of MIN_BLOCK rows
MIN_BLOCK = 16  # tl.dot's smallest side
PROGRAMS_PER_SM = 2  # the default split size aims for at least this many programs per SM at a full span
_SM_COUNT: dict[int, int] = {}


@dataclass(frozen=True)
class Tiles:
    """How one call is cut: ``block_q`` stacked query rows per program (a power of two >= 16), ``keys_per_split``
    key slots per split (a multiple of ``block_n``), ``block_n`` keys per step of a split's loop, ``warps`` and
    ``stages`` (software pipelining of that loop) per program."""

    block_q: int
    keys_per_split: int
    block_n: int = 64
    warps: int = 4  # 8 spills registers at 64 query rows x 64 keys x D=128 (ptxas, sm_90)
    stages: int = 3


# Sizes that vary between feeds are not specialized on (a new feed length would compile a new variant mid-stream).
@triton.jit(do_not_specialize=["track", "M", "SPLITS", "s_posb"])
def _attention_kernel(q_ptr, k_ptr, v_ptr, sp_ptr, fill_ptr, pos_ptr, rows_ptr, acc_ptr, m_ptr, l_ptr, out_ptr,
                      count_ptr, track, scale, M, HKV, SPLITS, keys_per_split,
                      s_qb, s_qm, s_qh, s_kn, s_kh, s_ks, s_vn, s_vh, s_vs, s_pn, s_pt, s_fn, s_posb, s_ob, s_om, s_oh,
                      G: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_Q: tl.constexpr,
                      BLOCK_N: tl.constexpr, PRECISION: tl.constexpr, PDL: tl.constexpr):
    wait_for_previous(PDL)
    split = tl.program_id(0)
    bh = tl.program_id(1)
    qb = tl.program_id(2)
    b = bh // HKV
    h = bh % HKV
    R = G * M
    row = tl.load(rows_ptr + b)
    limit = tl.load(fill_ptr + row * s_fn + track) + M  # slots this row's queries may read
    start = split * keys_per_split
    if start < limit:  # splits past the fill do nothing (the merge does not read them)
        r = qb * BLOCK_Q + tl.arange(0, BLOCK_Q)  # [BQ] stacked query rows: r = j * M + i
        r_ok = r < R
        i = r % M  # [BQ] the query's position in the feed
        head = h * G + r // M  # [BQ] its query head
        qpos = tl.load(pos_ptr + b * s_posb + i, mask=r_ok, other=-1)  # [BQ]; padding rows see nothing
        d = tl.arange(0, BLOCK_D)
        d_ok = d < D
        q_rows = b * s_qb + i * s_qm + head * s_qh  # [BQ]
        q = tl.load(q_ptr + q_rows[:, None] + d[None, :], mask=r_ok[:, None] & d_ok[None, :], other=0.0)  # [BQ, BD]
        m_i = tl.full((BLOCK_Q,), float("-inf"), dtype=tl.float32)
        l_i = tl.zeros((BLOCK_Q,), dtype=tl.float32)
        acc = tl.zeros((BLOCK_Q, BLOCK_D), dtype=tl.float32)
        end = tl.minimum(start + keys_per_split, limit)
        k_row = k_ptr + row * s_kn + h * s_kh
        v_row = v_ptr + row * s_vn + h * s_vh
        for s0 in range(start, end, BLOCK_N):  # pipelined in ``num_stages`` (the launch's, Tiles.stages)
            s = s0 + tl.arange(0, BLOCK_N)  # [BN] key slots
            s_ok = s < end
            kpos = tl.load(sp_ptr + row * s_pn + track * s_pt + s, mask=s_ok, other=0)  # [BN]
            kv_ok = s_ok[:, None] & d_ok[None, :]
            k = tl.load(k_row + s[:, None] * s_ks + d[None, :], mask=kv_ok, other=0.0)  # [BN, BD]
            scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # [BQ, BN] float32
            visible = s_ok[None, :] & (kpos[None, :] <= qpos[:, None])
            scores = tl.where(visible, scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, 1))
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row that saw nothing yet: exp(-inf) = 0
            p = tl.exp(scores - m_use[:, None])
            alpha = tl.exp(m_i - m_use)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(v_row + s[:, None] * s_vs + d[None, :], mask=kv_ok, other=0.0)  # [BN, BD]
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
        part = (bh * SPLITS + split) * R + r  # [BQ] into [B * H_kv, splits, R]
        tl.store(m_ptr + part, m_i, mask=r_ok)
        tl.store(l_ptr + part, l_i, mask=r_ok)
        tl.store(acc_ptr + part[:, None] * BLOCK_D + d[None, :], acc, mask=r_ok[:, None])
        tl.debug_barrier()  # every thread's partials are written before the count says so
        tile = bh * tl.num_programs(2) + qb
        done = tl.atomic_add(count_ptr + tile, 1, sem="acq_rel", scope="gpu")  # filled splits of this tile done before
        filled = tl.minimum((limit + keys_per_split - 1) // keys_per_split, SPLITS)  # the splits below the fill
        if done == filled - 1:  # the last one: the others' partials are visible (acquire)
            out_rows = b * s_ob + i * s_om + head * s_oh  # [BQ]
            _merge_splits(acc_ptr, m_ptr, l_ptr, out_ptr, out_rows, bh, r, r_ok, d, filled, SPLITS, R, D, BLOCK_D,
                          BLOCK_Q)
            tl.store(count_ptr + tile, 0)  # ready for the next call on this stream


@triton.jit
def _merge_splits(acc_ptr, m_ptr, l_ptr, out_ptr, out_rows, bh, r, r_ok, d, filled, SPLITS, R, D: tl.constexpr,
                  BLOCK_D: tl.constexpr, BLOCK_Q: tl.constexpr):
    """The ``filled`` splits' partials of one (row, head, query block) rescaled to one max, added in split order,
    divided by the total sum -> ``out`` at ``out_rows [BQ]`` (each row's offset; D contiguous)."""
    m = tl.full((BLOCK_Q,), float("-inf"), dtype=tl.float32)
    l = tl.zeros((BLOCK_Q,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_Q, BLOCK_D), dtype=tl.float32)
    for split in range(0, filled):
        part = (bh * SPLITS + split) * R + r
        m_s = tl.load(m_ptr + part, mask=r_ok, other=float("-inf"), cache_modifier=".cg")
        l_s = tl.load(l_ptr + part, mask=r_ok, other=0.0, cache_modifier=".cg")
        a_s = tl.load(acc_ptr + part[:, None] * BLOCK_D + d[None, :], mask=r_ok[:, None], other=0.0,
                      cache_modifier=".cg")
        m_new = tl.maximum(m, m_s)
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m - m_use)
        beta = tl.exp(m_s - m_use)
        l = l * alpha + l_s * beta
        acc = acc * alpha[:, None] + a_s * beta[:, None]
        m = m_new
    out = acc / tl.where(l > 0, l, 1.0)[:, None]
    tl.store(out_ptr + out_rows[:, None] + d[None, :], out.to(out_ptr.dtype.element_ty),
             mask=r_ok[:, None] & (d < D)[None, :])


def _pow2(n: int, lo: int = MIN_BLOCK) -> int:
    return max(lo, triton.next_power_of_2(n))


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def default_tiles(rows_q: int, span: int, heads: int, device: torch.device) -> Tiles:
    """The tiles for ``rows_q`` stacked query rows over ``span`` slots of ``heads`` (batch rows x K/V heads): query
    blocks of ``MIN_BLOCK`` rows up to ``SMALL_ROWS`` rows (a decided frame's 44 rows of Llama-3-8B in three blocks
    of 16 took 15.0 us a layer at 1,500 keys on an H200, in one block of 64: 21.4; ``docs/benchmarks/
    attention-tiles-h200.json``), one block of up to ``MAX_BLOCK_Q`` above; splits of whole ``block_n`` blocks, as
    many as give ``PROGRAMS_PER_SM`` programs per SM at a full span (the last split to finish merges them one by
    one: at 3,000 keys 256 keys a split took 18.9 us, 128 took 25.1)."""
    block_q = MIN_BLOCK if rows_q <= SMALL_ROWS else min(MAX_BLOCK_Q, _pow2(rows_q))
    block_n = Tiles.block_n
    want = PROGRAMS_PER_SM * _sm_count(device)
    per = max(block_n, triton.next_power_of_2(max(1, span * heads // want)))
    return Tiles(block_q, min(per, _pow2(span, block_n)))


def decode_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, slot_pos: torch.Tensor,
                     fill: torch.Tensor, pos: torch.Tensor, rows: torch.Tensor, track: int, scale: float,
                     span: int | None = None, tiles: Tiles | None = None) -> torch.Tensor:
    """``q [B, M, H_q, D]`` (any strides but D's; ``H_q = g * H_kv``) over pool rows ``rows [B]`` of ``keys``/
    ``values`` ``[N, H_kv, cap, D]``, masked by ``slot_pos [N, tracks, cap] <= pos [B, M]`` on ``track``, reading
    slots up to ``fill[rows, track] + M`` (``fill [N, tracks]``; at most ``span`` slots, default ``cap``) ->
    ``[B, M, H_q, D]`` (the layout the output projection reads). ``tiles``: how the call is cut (default:
    ``default_tiles``).

    No host sync: every size comes from shapes; graph-capturable."""
    b, m, hq, hd = q.shape
    hkv = keys.shape[1]
    if hq % hkv:
        raise ValueError(f"{hq} query heads do not group over {hkv} K/V heads")
    g = hq // hkv
    if rows.shape != (b,) or pos.shape != (b, m):
        raise ValueError(f"rows {tuple(rows.shape)} and pos {tuple(pos.shape)} do not match {b} batch rows")
    rows_q = g * m
    if rows_q > MAX_ROWS:
        raise ValueError(f"{rows_q} stacked query rows ({g} heads x {m} positions): the kernel takes <= {MAX_ROWS}")
    if (q.stride(-1) != 1 or keys.stride(-1) != 1 or values.stride(-1) != 1 or slot_pos.stride(-1) != 1
            or fill.stride(-1) != 1):
        raise ValueError("q, keys, values, slot_pos and fill need a contiguous last dimension")
    pos = pos.contiguous()
    span = keys.shape[2] if span is None else span
    tiles = tiles or default_tiles(rows_q, span, b * hkv, q.device)
    block_d = _pow2(hd)
    q_blocks = triton.cdiv(rows_q, tiles.block_q)
    splits = triton.cdiv(span, tiles.keys_per_split)
    acc = torch.empty(b * hkv, splits, rows_q, block_d, dtype=torch.float32, device=q.device)
    m_part = torch.empty(b * hkv, splits, rows_q, dtype=torch.float32, device=q.device)
    l_part = torch.empty_like(m_part)
    out = torch.empty(b, m, hq, hd, dtype=q.dtype, device=q.device)
    count = tile_counters(b * hkv * q_blocks, q.device)
    _attention_kernel[(splits, b * hkv, q_blocks)](
        q, keys, values, slot_pos, fill, pos, rows, acc, m_part, l_part, out, count, track, scale, m, hkv, splits,
        tiles.keys_per_split, q.stride(0), q.stride(1), q.stride(2), keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2), slot_pos.stride(0), slot_pos.stride(1), fill.stride(0),
        pos.stride(0), out.stride(0), out.stride(1), out.stride(2), G=g, D=hd, BLOCK_D=block_d, BLOCK_Q=tiles.block_q,
        BLOCK_N=tiles.block_n, PRECISION="ieee" if q.dtype == torch.float32 else None,
        num_warps=tiles.warps, num_stages=tiles.stages, **launch_options(q.device))  # float32: no TF32
    return out
