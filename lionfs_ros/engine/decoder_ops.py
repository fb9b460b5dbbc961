"""The static decoder's elementwise pieces with HF's arithmetic (RMSNorm, residual add + RMSNorm, RoPE, rotary with
the KV-cache writes, the SiLU gate, the masked softmax), the fusing of projection weights, and the compiled forms
of the pieces (``_Ops``: ``torch.compile`` fuses each into one kernel for the graphed steps)."""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """HF LlamaRMSNorm's arithmetic (float32 statistics, weight applied in the input dtype)."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float):
    """``residual + x`` and its RMSNorm (the two always follow each other between sublayers)."""
    summed = residual + x
    return rms_norm(summed, weight, eps), summed


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """HF's ``apply_rotary_pos_emb`` on ``[H, M, D]`` with ``cos``/``sin`` ``[1, M, D]``."""
    half = x.shape[-1] // 2
    return (x * cos) + (torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin)


def rope_and_store(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor,
                   slots: torch.Tensor, heads: tuple[int, int, int]) -> torch.Tensor:
    """``qkv [M, (Hq + 2 Hkv) * D]`` -> the rotated queries ``[Hq, M, D]``; the rotated keys and the values are
    written into ``k_buf``/``v_buf`` ``[Hkv, cap, D]`` at ``slots [M]``. ``heads``: (Hq, Hkv, D). Compiled, the
    writes are indexed stores into the buffers in place (no copy of a buffer); inductor made three kernels of it
    on an H200 (the rotation, one per write)."""
    hq, hkv, hd = heads
    m = qkv.shape[0]
    qk = rope(qkv[:, :(hq + hkv) * hd].view(m, hq + hkv, hd).transpose(0, 1), cos, sin)  # [Hq+Hkv, M, D]
    k_buf[:, slots] = qk[hq:]
    v_buf[:, slots] = qkv[:, (hq + hkv) * hd:].view(m, hkv, hd).transpose(0, 1)  # [Hkv, M, D]
    return qk[:hq]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(scores * scale + mask)`` in float32, back to the scores' dtype (HF eager attention's arithmetic)."""
    return torch.softmax(scores.float() * scale + mask, dim=-1).to(scores.dtype)


def silu_gate(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def fuse_rows(modules: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenate linear layers' weights (and biases) along the output dim; the layers then view into them."""
    weight = torch.cat([m.weight.data for m in modules], dim=0)
    has_bias = [m.bias is not None for m in modules]
    if any(has_bias) and not all(has_bias):
        raise ValueError("cannot fuse linear layers where only some have a bias")
    bias = torch.cat([m.bias.data for m in modules], dim=0) if all(has_bias) else None
    row = 0
    for m in modules:
        rows = m.weight.shape[0]
        m.weight.data = weight[row:row + rows]
        if bias is not None:
            m.bias.data = bias[row:row + rows]
        row += rows
    return weight, bias


def compile_problem() -> str | None:
    """None if ``torch.compile`` can fuse the graphed steps here (a CUDA GPU and a working Triton), else why not."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    from torch.utils._triton import has_triton

    if not has_triton():
        return "Triton is not installed or does not support this GPU"
    return None


def _own_code(fn):
    """``fn`` over a copy of its code object: ``torch.compile`` keeps compiled shapes per code object (at most
    dynamo's ``recompile_limit``, a hard error with ``fullgraph``), so a copy compiles its shapes apart."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


class ElementwiseOps:
    def __init__(self, act, compiled: bool, own_code: bool = False):
        gate = silu_gate if act is None else (lambda gu: act(gu.chunk(2, -1)[0]) * gu.chunk(2, -1)[1])
        code = _own_code if own_code else (lambda fn: fn)
        wrap = (lambda fn: torch.compile(code(fn), dynamic=False, fullgraph=True)) if compiled else (lambda fn: fn)
        self.rms_norm, self.add_rms_norm, self.rope, self.gate = wrap(rms_norm), wrap(add_rms_norm), wrap(rope), wrap(gate)
        self.rope_and_store = wrap(rope_and_store)
        self.masked_softmax = wrap(masked_softmax)
