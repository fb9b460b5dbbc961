"""A Llama-family decoder pass over preallocated KV buffers (the static backend's math).

Same function as ``model.step`` for a backbone without token dropping, written for fixed shapes so
a step can be captured in a CUDA graph, and with few kernels (a one-token step is bound by launch
gaps between small kernels as much as by reading the weights):
- K/V live in buffers ``[layers, H_kv, capacity, D]``; new tokens are written at slots
  ``fill .. fill+M-1`` with ``index_copy_``; each slot remembers its position (``slot_pos``, a
  sentinel past any position when empty), so the additive mask ``slot_pos <= query position`` over
  the whole buffer is causal inside the step and hides empty slots; it is built once per step;
- ``fill`` and ``next_pos`` live on the device and are advanced by the step itself, so a graph
  replay needs no host input besides the new embeddings;
- q/k/v and gate/up run as one matrix product each (their weights are concatenated once, and the
  model's own ``q_proj`` etc. become views into the concatenation: no extra memory); RoPE rotates q
  and k together; grouped-query attention folds the query heads that share a K/V head into the
  query length (HF's ``repeat_kv`` pairing, without copying K/V);
- the elementwise pieces (RMSNorm, residual add + RMSNorm, RoPE, SiLU-gate, masked softmax) are
  plain functions with HF's arithmetic; ``compile=True`` fuses each into one kernel with
  ``torch.compile`` (for the graphed steps only: fixed shapes, compiled once);
- attention is either ``sdpa`` (PyTorch's fused kernel with the mask) or ``split``: scores by one
  batched matrix product over the whole buffer, a float32 masked softmax (HF's eager arithmetic),
  then the value product split into ``SPLIT_CHUNK``-slot chunks summed in float32. With a few
  queries and thousands of keys the fused kernel runs on a handful of SMs; the split form keeps
  every SM busy (split-K over the keys).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

POSITION_SENTINEL = 1 << 40  # an empty slot's position: after every query, so always masked
SPLIT_CHUNK = 256  # key slots per chunk of the split value product (buffers are sized in multiples)
ATTENTION_KINDS = ("sdpa", "split")


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


@dataclass
class FusedLayer:
    ln1: torch.Tensor  # input_layernorm weight
    ln2: torch.Tensor  # post_attention_layernorm weight
    eps: float
    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor | None
    o_weight: torch.Tensor
    o_bias: torch.Tensor | None
    gate_up_weight: torch.Tensor
    gate_up_bias: torch.Tensor | None
    down_weight: torch.Tensor
    down_bias: torch.Tensor | None


class _Ops:
    def __init__(self, act, compiled: bool):
        gate = silu_gate if act is None else (lambda gu: act(gu.chunk(2, -1)[0]) * gu.chunk(2, -1)[1])
        wrap = (lambda fn: torch.compile(fn, dynamic=False, fullgraph=True)) if compiled else (lambda fn: fn)
        self.rms_norm, self.add_rms_norm, self.rope, self.gate = wrap(rms_norm), wrap(add_rms_norm), wrap(rope), wrap(gate)
        self.masked_softmax = wrap(masked_softmax)


class FusedDecoder:
    """The backbone's layers with fused projections; shared by every static state of one model."""

    def __init__(self, llm, compile: bool = False, attention: str = "sdpa"):
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention {attention!r} is not one of {ATTENTION_KINDS}")
        self.attention = attention
        self.llm = llm
        self.decoder = llm.get_decoder()
        cfg = llm.config
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = getattr(cfg, "num_key_value_heads", None) or self.num_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.num_heads
        self.groups = self.num_heads // self.num_kv_heads
        self.layers: list[FusedLayer] = []
        for layer in self.decoder.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv_w, qkv_b = fuse_rows([attn.q_proj, attn.k_proj, attn.v_proj])
            gu_w, gu_b = fuse_rows([mlp.gate_proj, mlp.up_proj])
            self.layers.append(FusedLayer(
                layer.input_layernorm.weight, layer.post_attention_layernorm.weight,
                layer.input_layernorm.variance_epsilon, qkv_w, qkv_b, attn.o_proj.weight, attn.o_proj.bias,
                gu_w, gu_b, mlp.down_proj.weight, mlp.down_proj.bias))
        self.final_norm = (self.decoder.norm.weight, self.decoder.norm.variance_epsilon)
        self.scaling = self.decoder.layers[0].self_attn.scaling
        act = None if getattr(cfg, "hidden_act", "silu") == "silu" else self.decoder.layers[0].mlp.act_fn
        self.eager_ops = _Ops(act, compiled=False)
        self.fast_ops = _Ops(act, compiled=compile)

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, slot_pos: torch.Tensor,
                fill: torch.Tensor, next_pos: torch.Tensor, fast: bool = False) -> torch.Tensor:
        """``x [M, d]`` new embeddings -> last position's logits ``[1, V]``; writes K/V, advances fill/next_pos.

        ``fast``: use the compiled elementwise kernels (fixed-shape graphed steps)."""
        ops = self.fast_ops if fast else self.eager_ops
        m = x.shape[0]
        steps = torch.arange(m, device=x.device)
        pos = next_pos + steps  # [M]
        slots = fill + steps
        slot_pos.index_copy_(0, slots, pos)
        allowed = (slot_pos[None, :] <= pos[:, None]).repeat(self.groups, 1)  # [g*M, cap]
        mask_dtype = torch.float32 if self.attention == "split" else x.dtype
        mask = torch.zeros(allowed.shape, dtype=mask_dtype, device=x.device).masked_fill(~allowed, float("-inf"))
        cos, sin = self.decoder.rotary_emb(x[None], position_ids=pos[None])  # [1, M, D]
        first = self.layers[0]
        h = ops.rms_norm(x, first.ln1, first.eps)
        residual = x
        for idx, fl in enumerate(self.layers):
            attn = self._attention(fl, h, keys[idx], values[idx], slots, mask, cos, sin, ops)
            h, residual = ops.add_rms_norm(attn, residual, fl.ln2, fl.eps)
            mlp = F.linear(ops.gate(F.linear(h, fl.gate_up_weight, fl.gate_up_bias)), fl.down_weight, fl.down_bias)
            nxt = self.layers[idx + 1] if idx + 1 < len(self.layers) else None
            weight, eps = (nxt.ln1, nxt.eps) if nxt is not None else self.final_norm
            h, residual = ops.add_rms_norm(mlp[-1:] if nxt is None else mlp, residual[-1:] if nxt is None else residual,
                                           weight, eps)
        logits = self.llm.get_output_embeddings()(h)  # [1, V]: h is the last position after the final norm
        fill.add_(m)
        next_pos.add_(m)
        return logits

    def _attention(self, fl: FusedLayer, h, k_buf, v_buf, slots, mask, cos, sin, ops) -> torch.Tensor:
        m, hd, hq, hkv = h.shape[0], self.head_dim, self.num_heads, self.num_kv_heads
        qkv = F.linear(h, fl.qkv_weight, fl.qkv_bias)  # [M, (Hq + 2 Hkv) * D]
        qk = ops.rope(qkv[:, :(hq + hkv) * hd].view(m, hq + hkv, hd).transpose(0, 1), cos, sin)  # [Hq+Hkv, M, D]
        q, k = qk[:hq], qk[hq:]
        v = qkv[:, (hq + hkv) * hd:].view(m, hkv, hd).transpose(0, 1)  # [Hkv, M, D]
        k_buf.index_copy_(1, slots, k)  # k_buf [Hkv, cap, D]
        v_buf.index_copy_(1, slots, v)
        q = q.reshape(hkv, self.groups * m, hd)  # query heads of one K/V head, stacked along length
        if self.attention == "sdpa":
            out = F.scaled_dot_product_attention(q[None], k_buf[None], v_buf[None], attn_mask=mask[None, None],
                                                 scale=self.scaling)[0]
        else:
            out = self._split_attention(q, k_buf, v_buf, mask, ops)
        out = out.view(hq, m, hd).transpose(0, 1).reshape(m, hq * hd)
        return F.linear(out, fl.o_weight, fl.o_bias)

    def _split_attention(self, q, k_buf, v_buf, mask, ops) -> torch.Tensor:
        """``q [Hkv, gM, D]`` over the whole buffer ``[Hkv, cap, D]`` -> ``[Hkv, gM, D]``."""
        hkv, rows, hd = q.shape
        cap = k_buf.shape[1]
        chunks = cap // SPLIT_CHUNK
        probs = ops.masked_softmax(torch.matmul(q, k_buf.transpose(1, 2)), mask, self.scaling)  # [Hkv, gM, cap]
        probs = probs.view(hkv, rows, chunks, SPLIT_CHUNK).transpose(1, 2)  # [Hkv, chunks, gM, C]
        partial = torch.matmul(probs, v_buf.view(hkv, chunks, SPLIT_CHUNK, hd))  # [Hkv, chunks, gM, D]
        return partial.sum(1, dtype=torch.float32).to(q.dtype)
