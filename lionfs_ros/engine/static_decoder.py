"""A Llama-family decoder pass over preallocated KV buffers (the static backend's math).

Same function as ``model.step`` for a backbone without token dropping, written for fixed shapes so
a step can be captured in a CUDA graph:
- K/V live in buffers ``[layers, H_kv, capacity, D]``; new tokens are written at slots
  ``fill .. fill+M-1`` with ``index_copy_``; each slot remembers its position (``slot_pos``, a
  sentinel past any position when empty), so the mask is ``slot_pos <= query position`` over the
  whole buffer: causal inside the step, nothing from empty slots;
- ``fill`` and ``next_pos`` live on the device and are advanced by the step itself, so a graph
  replay needs no host input besides the new embeddings;
- q/k/v and gate/up run as one matrix product each (their weights are concatenated once, and the
  model's own ``q_proj`` etc. become views into the concatenation: no extra memory). Norms, RoPE
  cos/sin, activation, ``o_proj``, ``down_proj`` and the LM head are the model's own modules;
- grouped-query attention without copying K/V: the query heads that share a K/V head are folded
  into the query length (``[H_kv, groups * M, D]``), which is HF's ``repeat_kv`` pairing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

POSITION_SENTINEL = 1 << 40  # an empty slot's position: after every query, so always masked


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
    layer: nn.Module
    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor | None
    gate_up_weight: torch.Tensor
    gate_up_bias: torch.Tensor | None


class FusedDecoder:
    """The backbone's layers with fused projections; shared by every static state of one model."""

    def __init__(self, llm):
        self.llm = llm
        self.decoder = llm.get_decoder()
        cfg = llm.config
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = getattr(cfg, "num_key_value_heads", None) or self.num_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.num_heads
        self.groups = self.num_heads // self.num_kv_heads
        self.layers = []
        for layer in self.decoder.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv_w, qkv_b = fuse_rows([attn.q_proj, attn.k_proj, attn.v_proj])
            gu_w, gu_b = fuse_rows([mlp.gate_proj, mlp.up_proj])
            self.layers.append(FusedLayer(layer, qkv_w, qkv_b, gu_w, gu_b))
        self.scaling = self.decoder.layers[0].self_attn.scaling

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, slot_pos: torch.Tensor,
                fill: torch.Tensor, next_pos: torch.Tensor, last_only: bool) -> torch.Tensor:
        """``x [M, d]`` new embeddings -> logits ``[1, V]`` (last position) or ``[M, V]``; writes K/V, advances fill/next_pos."""
        m = x.shape[0]
        steps = torch.arange(m, device=x.device)
        pos = next_pos + steps  # [M]
        slots = fill + steps
        slot_pos.index_copy_(0, slots, pos)
        mask = (slot_pos[None, :] <= pos[:, None]).repeat(self.groups, 1)[None, None]  # [1, 1, g*M, cap]
        cos, sin = self.decoder.rotary_emb(x[None], position_ids=pos[None])  # [1, M, D]
        cos, sin = cos[0][None], sin[0][None]  # [1, M, D]: broadcast over heads
        hidden = x
        for idx, fl in enumerate(self.layers):
            hidden = self._layer(fl, hidden, keys[idx], values[idx], slots, mask, cos, sin)
        if last_only:
            hidden = hidden[-1:]
        logits = self.llm.get_output_embeddings()(self.decoder.norm(hidden))
        fill.add_(m)
        next_pos.add_(m)
        return logits

    def _layer(self, fl: FusedLayer, hidden, k_buf, v_buf, slots, mask, cos, sin):
        m, hd, hq, hkv = hidden.shape[0], self.head_dim, self.num_heads, self.num_kv_heads
        layer = fl.layer
        residual = hidden
        h = layer.input_layernorm(hidden)
        qkv = F.linear(h, fl.qkv_weight, fl.qkv_bias)  # [M, (Hq + 2 Hkv) * D]
        q, k, v = qkv.split([hq * hd, hkv * hd, hkv * hd], dim=-1)
        q = q.view(m, hq, hd).transpose(0, 1)  # [Hq, M, D]
        k = k.view(m, hkv, hd).transpose(0, 1)  # [Hkv, M, D]
        v = v.view(m, hkv, hd).transpose(0, 1)
        q = (q * cos) + (_rotate_half(q) * sin)
        k = (k * cos) + (_rotate_half(k) * sin)
        k_buf.index_copy_(1, slots, k.to(k_buf.dtype))  # k_buf [Hkv, cap, D]
        v_buf.index_copy_(1, slots, v.to(v_buf.dtype))
        q = q.reshape(hkv, self.groups * m, hd)[None]  # query heads of one K/V head, stacked along length
        out = F.scaled_dot_product_attention(q, k_buf[None], v_buf[None], attn_mask=mask, scale=self.scaling)
        out = out[0].reshape(hq, m, hd).transpose(0, 1).reshape(m, hq * hd)
        hidden = residual + layer.self_attn.o_proj(out)
        residual = hidden
        h = layer.post_attention_layernorm(hidden)
        gate, up = F.linear(h, fl.gate_up_weight, fl.gate_up_bias).chunk(2, dim=-1)
        return residual + layer.mlp.down_proj(layer.mlp.act_fn(gate) * up)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
