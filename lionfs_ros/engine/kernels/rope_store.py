"""Rotary embedding of the queries and keys, and both KV-cache writes, in one launch.

After a layer's fused q/k/v product ``qkv [M, (H_q + 2 H_kv) * D]`` the static backend needs the rotated queries
(for attention) and the rotated keys and the values written into the layer's KV buffers ``[H_kv, cap, D]`` at the
feed's slots. Compiled as torch ops this was three kernels (inductor: the rotation, then one indexed store per
buffer); here one program per (position, head) row does all of it:

- query heads ``0 .. H_q``: rotate, store into ``q [M, H_q, D]`` (the attention kernel reads that layout);
- key heads ``H_q .. H_q + H_kv``: rotate, store into ``keys[h, slots[i]]``, and copy the value row of the same
  K/V head into ``values[h, slots[i]]``.

Rotation is HF's ``x * cos + rotate_half(x) * sin`` (``rotate_half(x) = [-x2, x1]``) computed in float32 and rounded
once to the activations' dtype, as inductor's compiled form of the same expression does.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dependent_launch import launch_options, wait_for_previous


@triton.jit
def _rope_store_kernel(qkv_ptr, cos_ptr, sin_ptr, slots_ptr, q_ptr, k_ptr, v_ptr, HQ, HKV,
                       s_xm, s_cm, s_qm, s_qh, s_kh, s_ks, s_vh, s_vs,
                       HALF: tl.constexpr, BLOCK_HALF: tl.constexpr, PDL: tl.constexpr):
    wait_for_previous(PDL)
    i = tl.program_id(0)  # position in the feed
    head = tl.program_id(1)  # 0 .. HQ: a query head; HQ .. HQ + HKV: a key head (and its value row)
    c = tl.arange(0, BLOCK_HALF)
    ok = c < HALF
    row = qkv_ptr + i * s_xm + head * (2 * HALF)
    x1 = tl.load(row + c, mask=ok, other=0.0).to(tl.float32)  # [BH] first half of the head
    x2 = tl.load(row + HALF + c, mask=ok, other=0.0).to(tl.float32)  # [BH] second half
    cos1 = tl.load(cos_ptr + i * s_cm + c, mask=ok, other=0.0).to(tl.float32)
    cos2 = tl.load(cos_ptr + i * s_cm + HALF + c, mask=ok, other=0.0).to(tl.float32)
    sin1 = tl.load(sin_ptr + i * s_cm + c, mask=ok, other=0.0).to(tl.float32)
    sin2 = tl.load(sin_ptr + i * s_cm + HALF + c, mask=ok, other=0.0).to(tl.float32)
    y1 = x1 * cos1 - x2 * sin1
    y2 = x2 * cos2 + x1 * sin2
    if head < HQ:
        dst = q_ptr + i * s_qm + head * s_qh
    else:
        kv = head - HQ
        slot = tl.load(slots_ptr + i)
        dst = k_ptr + kv * s_kh + slot * s_ks
        v_src = qkv_ptr + i * s_xm + (HQ + HKV + kv) * (2 * HALF)
        v_dst = v_ptr + kv * s_vh + slot * s_vs
        tl.store(v_dst + c, tl.load(v_src + c, mask=ok), mask=ok)
        tl.store(v_dst + HALF + c, tl.load(v_src + HALF + c, mask=ok), mask=ok)
    tl.store(dst + c, y1.to(dst.dtype.element_ty), mask=ok)
    tl.store(dst + HALF + c, y2.to(dst.dtype.element_ty), mask=ok)


def rope_and_store(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor,
                   slots: torch.Tensor, heads: tuple[int, int, int]) -> torch.Tensor:
    """``qkv [M, (H_q + 2 H_kv) * D]``, ``cos``/``sin`` ``[1, M, D]``, ``slots [M]`` -> the rotated queries
    ``[M, H_q, D]``; the rotated keys and the values are written into ``k_buf``/``v_buf`` ``[H_kv, cap, D]`` at
    ``slots``. ``heads``: (H_q, H_kv, D). No host sync: graph-capturable."""
    hq, hkv, hd = heads
    m = qkv.shape[0]
    if hd % 2 or qkv.shape[1] != (hq + 2 * hkv) * hd:
        raise ValueError(f"qkv {tuple(qkv.shape)} is not {hq} + 2 x {hkv} heads of an even {hd}")
    if qkv.stride(1) != 1 or cos.stride(-1) != 1 or sin.stride(-1) != 1 or k_buf.stride(-1) != 1 \
            or v_buf.stride(-1) != 1:
        raise ValueError("qkv, cos, sin and the buffers need a contiguous last dimension")
    cos, sin = cos.reshape(m, hd), sin.reshape(m, hd)
    if cos.stride(0) != sin.stride(0):
        raise ValueError("cos and sin need the same layout")
    q = torch.empty(m, hq, hd, dtype=qkv.dtype, device=qkv.device)
    half = hd // 2
    _rope_store_kernel[(m, hq + hkv)](
        qkv, cos, sin, slots, q, k_buf, v_buf, hq, hkv, qkv.stride(0), cos.stride(0), q.stride(0), q.stride(1),
        k_buf.stride(0), k_buf.stride(1), v_buf.stride(0), v_buf.stride(1), HALF=half,
        BLOCK_HALF=triton.next_power_of_2(half), num_warps=1, **launch_options(qkv.device))
    return q
