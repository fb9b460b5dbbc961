"""Self-attention of the vision towers (SigLIP, CLIP): non-causal, no mask, read from the fused q/k/v product.

Why a kernel of our own: in the tower's CUDA graph PyTorch's SDPA (cuDNN at the towers' shapes) is a memset node and
its kernel, and each memset leaves a gap of a few us before the kernel starts; SigLIP-L/16-384 pays that 24 times
per frame. This kernel writes every output element it owns (no workspace to clear) and reads q, k and v in place
from the product ``qkv [B, L, 3, H, D]`` (no transposes around it); its output ``[B, L, H, D]`` is the out
projection's input ``[B*L, H*D]`` as it is.

One program per (block of ``BLOCK_M`` queries, batch row x head), grid ``(cdiv(L, BLOCK_M), B * H)``: it walks the L
keys in blocks of ``BLOCK_N`` with an online softmax (FlashAttention's): float32 running max ``m``, sum ``l`` and
unnormalized output ``acc``, the scores in base 2 (``log2(e)`` folded into the scale: ``exp2`` is the GPU's native
exponential), ``tl.dot`` for q k^T and p v with float32 accumulation (float32 inputs: IEEE products, no TF32).
Keys past L score -inf; the first block always holds key 0, so every row's max is finite after it. Query rows past L
are computed on zeros and not stored. The output is rounded once, after the division by ``l``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .decode_attention import _pow2
from .dependent_launch import launch_options, wait_for_previous

DEFAULT_BLOCK = 64  # queries per program and keys per step (default_tiles)
QKV = 3  # the product's q, k, v planes


@dataclass(frozen=True)
class Tiles:
    """How one call is cut: ``block_m`` queries per program, ``block_n`` keys per step of its loop (powers of two
    >= 16), ``warps`` and ``stages`` (software pipelining of the key loop) per program."""

    block_m: int
    block_n: int = 64
    warps: int = 4
    stages: int = 2


# What scripts/tower_attention_bench.py sweeps at the towers' shapes (SigLIP-L: L=576, H=16; CLIP-B: L=197, H=12).
TILE_CANDIDATES = (
    Tiles(16, 64, 2, 2), Tiles(32, 64, 4, 2), Tiles(32, 128, 4, 2), Tiles(64, 32, 4, 2), Tiles(64, 64, 4, 2),
    Tiles(64, 64, 4, 3), Tiles(64, 128, 4, 2), Tiles(128, 64, 8, 2), Tiles(128, 32, 4, 3),
)


@triton.jit
def _tower_attention_kernel(qkv_ptr, out_ptr, scale_log2, L, H, s_b, s_l, s_t, s_h, s_ob, s_ol, s_oh,
                            D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                            PRECISION: tl.constexpr, PDL: tl.constexpr):
    wait_for_previous(PDL)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM] query positions
    rows_ok = rows < L
    d = tl.arange(0, BLOCK_D)
    d_ok = d < D
    head = qkv_ptr + b * s_b + h * s_h  # q of (b, h); its k and v: s_t and 2 s_t further
    q = tl.load(head + rows[:, None] * s_l + d[None, :], mask=rows_ok[:, None] & d_ok[None, :], other=0.0)  # [BM, BD]
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for n0 in range(0, L, BLOCK_N):
        keys = n0 + tl.arange(0, BLOCK_N)  # [BN] key positions
        keys_ok = keys < L
        kv_ok = keys_ok[:, None] & d_ok[None, :]
        k = tl.load(head + s_t + keys[:, None] * s_l + d[None, :], mask=kv_ok, other=0.0)  # [BN, BD]
        scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2  # [BM, BN] float32, base 2
        scores = tl.where(keys_ok[None, :], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, 1))  # finite from the first block on (it holds key 0)
        p = tl.exp2(scores - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)  # the earlier blocks' rescale (0 at the first)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(head + 2 * s_t + keys[:, None] * s_l + d[None, :], mask=kv_ok, other=0.0)  # [BN, BD]
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    out = acc / l_i[:, None]
    dst = out_ptr + b * s_ob + rows[:, None] * s_ol + h * s_oh + d[None, :]
    tl.store(dst, out.to(out_ptr.dtype.element_ty), mask=rows_ok[:, None] & d_ok[None, :])


def default_tiles(length: int) -> Tiles:
    """The tiles for sequences of ``length`` tokens: blocks of ``DEFAULT_BLOCK`` queries and keys (at most the sequence,
    rounded up to a power of two), 4 warps, 3 pipelining stages. Measured on an H200 (``scripts/tower_attention_bench.py``,
    every candidate of ``TILE_CANDIDATES`` in a CUDA graph of 24 calls, bf16): the fastest at SigLIP-L/16-384 (576
    tokens, 16 heads) for 1, 4 and 8 frames (10.9, 23.2, 36.8 us a call; cuDNN's SDPA 12.6, 27.7, 41.7) and at the
    CLIP-B/16-224 ego tower (197 tokens, 12 heads) for 4 and 8 frames, within 0.01 us of the fastest for one
    (4.62 us; cuDNN 7.38); ``docs/benchmarks/tower-attention-h200.json``."""
    block = min(DEFAULT_BLOCK, _pow2(length))
    return Tiles(block, block, warps=4, stages=3)


def tower_attention(qkv: torch.Tensor, scale: float, tiles: Tiles | None = None) -> torch.Tensor:
    """``qkv [B, L, 3, H, D]`` (the q/k/v product viewed by plane and head; D contiguous) -> ``softmax(q k^T * scale)
    v`` per (batch row, head) as ``[B, L, H, D]``, contiguous, in ``qkv``'s dtype. ``tiles``: how the call is cut
    (default: ``default_tiles``). No host sync, no workspace: graph-capturable."""
    b, length, planes, heads, hd = qkv.shape
    if planes != QKV or qkv.stride(-1) != 1:
        raise ValueError(f"qkv {tuple(qkv.shape)} is not [B, L, 3, H, D] with a contiguous last dimension")
    tiles = tiles or default_tiles(length)
    out = torch.empty(b, length, heads, hd, dtype=qkv.dtype, device=qkv.device)
    grid = (triton.cdiv(length, tiles.block_m), b * heads)
    _tower_attention_kernel[grid](
        qkv, out, scale * math.log2(math.e), length, heads, qkv.stride(0), qkv.stride(1), qkv.stride(2),
        qkv.stride(3), out.stride(0), out.stride(1), out.stride(2), D=hd, BLOCK_D=_pow2(hd), BLOCK_M=tiles.block_m,
        BLOCK_N=tiles.block_n, PRECISION="ieee" if qkv.dtype == torch.float32 else None,
        num_warps=tiles.warps, num_stages=tiles.stages, **launch_options(qkv.device))  # float32: no TF32
    return out
