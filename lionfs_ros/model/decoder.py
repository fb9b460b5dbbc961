"""One pass of the LLM backbone over new tokens, with token dropping and a stream KV cache.

We run the HF decoder's own layers (any Llama-family or Qwen2 causal LM: ``embed_tokens``,
``layers``, ``norm``, ``rotary_emb``, ``lm_head``) in our own loop, because a dropping layer sees
a different set of tokens (and holds a different cache) than its neighbours. Each layer gets an
additive mask built from original positions: a query at position p attends to every valid key
at position <= p that its layer holds. Rotary embeddings use original positions too.

Works for full sequences (training, with an optional padding mask and no cache) and for
incremental steps with a ``StreamKVCache`` (streaming). Sliding-window attention is not used:
every layer attends to all cached tokens.

Forks in one sequence (training only, no cache): ``branch_ids [B, L]`` puts tokens on the main
context (0) or on a fork (k > 0), and ``position_ids [B, L]`` gives their rotary positions. A query
then attends to the earlier tokens (by sequence order) of the main context and of its own fork,
never to another fork's: the slow thinker's template and answer, written on a fork of the
engine's context, stay invisible to everything the main context holds after them, while the
fork can start at the position the main context continues from.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel

from .kv_cache import StreamKVCache
from .token_dropping import TokenDropping


@dataclass
class DecoderOutput:
    logits: torch.Tensor  # [B, L, V]
    hidden_states: torch.Tensor  # [B, L, d] after the final norm
    past_key_values: StreamKVCache | None
    router_aux_loss: torch.Tensor  # scalar, mean over dropping layers
    kept: dict[int, torch.Tensor] = field(default_factory=dict)  # dropping layer -> [B, L] bool


def _attention_mask(q_pos, key_pos, key_valid, dtype, q_branch=None, key_branch=None) -> torch.Tensor:
    """Additive mask ``[B, 1, Lq, Lk]``: 0 where key is valid, not after the query and (with branches)
    on the main context or the query's own fork; else the dtype's min."""
    allowed = key_valid[:, None, :] & (key_pos[:, None, :] <= q_pos[:, :, None])
    if q_branch is not None:
        allowed &= (key_branch[:, None, :] == 0) | (key_branch[:, None, :] == q_branch[:, :, None])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=q_pos.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def _call_layer(layer, hidden, mask, pos, cos_sin, cache):
    return layer(
        hidden,
        attention_mask=mask,
        position_ids=pos,
        past_key_values=cache,
        use_cache=cache is not None,
        position_embeddings=cos_sin,
    )


def run_decoder(
    llm: PreTrainedModel,
    inputs_embeds: torch.Tensor,
    visual_mask: torch.Tensor,
    *,
    dropping: TokenDropping | None = None,
    past_key_values: StreamKVCache | None = None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    branch_ids: torch.Tensor | None = None,
) -> DecoderOutput:
    """``inputs_embeds [B, L, d]``, ``visual_mask [B, L]`` -> logits ``[B, L, V]`` (+ updated cache).

    ``attention_mask [B, L]`` (1 = token, 0 = padding) is for full sequences without a cache.
    ``position_ids`` and ``branch_ids [B, L]`` (both or neither, no cache): forks, see the module doc.
    """
    batch, length, _ = inputs_embeds.shape
    device, dtype = inputs_embeds.device, inputs_embeds.dtype
    cache = past_key_values
    valid = torch.ones(batch, length, dtype=torch.bool, device=device)
    if attention_mask is not None:
        valid = attention_mask.to(device=device, dtype=torch.bool)
        if cache is not None and not bool(valid.all()):
            raise ValueError("a padding attention_mask is only supported without past_key_values")
    start = cache.seq_length if cache is not None else 0
    pos = (valid.long().cumsum(-1) - 1).clamp(min=0) + start  # [B, L]
    causal, branch = pos, None  # causality follows positions, except with forks (sequence order)
    if branch_ids is not None:
        if cache is not None or position_ids is None:
            raise ValueError("branch_ids need position_ids and no past_key_values")
        pos = position_ids.to(device=device, dtype=torch.long)
        causal = torch.arange(length, device=device).expand(batch, -1)
        branch = branch_ids.to(device=device, dtype=torch.long)
    visual = visual_mask.to(device=device, dtype=torch.bool) & valid

    decoder = llm.get_decoder()
    cos, sin = decoder.rotary_emb(inputs_embeds, position_ids=pos)  # each [B, L, head_dim]
    sdpa = llm.config._attn_implementation == "sdpa"
    plain_masks: dict[int, torch.Tensor | None] = {}  # by cached length: past keys all precede the new tokens
    hidden = inputs_embeds
    aux_losses, kept_masks = [], {}
    for idx, layer in enumerate(decoder.layers):
        past_pos = cache.layer_positions(idx, batch, device) if cache is not None else pos[:, :0]
        router = dropping.router(idx) if dropping is not None else None
        logits_r = kept = None
        if router is not None and bool(visual.any()):
            logits_r = router(hidden)  # [B, L]
            kept = dropping.select(logits_r, visual) | ~valid  # padding rides along, masked as keys
            kept_masks[idx] = kept & valid
            aux_losses.append(dropping.aux_loss(logits_r, kept, visual))
        if kept is not None and not bool(kept.all()):
            hidden = _dropping_layer(layer, hidden, logits_r, kept, visual, valid, pos, (cos, sin), past_pos, cache, idx,
                                     causal, branch)
            continue
        past_len = past_pos.shape[1]
        if past_len not in plain_masks:
            fresh = past_len == 0 and bool(valid.all()) and branch is None
            key_valid = torch.cat([torch.ones_like(past_pos, dtype=torch.bool), valid], 1)
            plain_masks[past_len] = None if (sdpa and fresh) else _attention_mask(
                causal, torch.cat([past_pos, causal], 1), key_valid, dtype, branch, branch
            )
        out = _call_layer(layer, hidden, plain_masks[past_len], pos, (cos, sin), cache)
        hidden = out if logits_r is None else TokenDropping.straight_through(out, hidden, logits_r, visual)
        if cache is not None:
            cache.append_positions(idx, pos)

    hidden = decoder.norm(hidden)
    logits = llm.get_output_embeddings()(hidden)
    if cache is not None:
        cache.seq_length = start + length
    aux = torch.stack(aux_losses).mean() if aux_losses else inputs_embeds.new_zeros((), dtype=torch.float32)
    return DecoderOutput(logits=logits, hidden_states=hidden, past_key_values=cache, router_aux_loss=aux, kept=kept_masks)


def _dropping_layer(layer, hidden, logits_r, kept, visual, valid, pos, cos_sin, past_pos, cache, idx, causal, branch):
    """Run ``layer`` on the kept tokens only and scatter them back; dropped tokens pass through.

    ``causal [B, L]``: what causality follows (the positions, or the sequence order with forks);
    ``branch [B, L]`` or None: the fork of each token."""
    batch, length, width = hidden.shape
    counts = kept.sum(-1)  # [B]
    slots = int(counts.max())
    if cache is not None and bool((counts != slots).any()):
        raise ValueError("with a KV cache every row must keep the same number of tokens (use batch size 1)")
    order = torch.argsort((~kept).to(torch.int8), dim=-1, stable=True)[:, :slots]  # kept indices first, in order
    slot_valid = torch.arange(slots, device=hidden.device)[None] < counts[:, None]  # [B, M]

    def take(t: torch.Tensor) -> torch.Tensor:  # [B, L, ...] -> [B, M, ...] in kept order
        return t.gather(1, order if t.dim() == 2 else order[..., None].expand(-1, -1, t.shape[-1]))

    h_sel, pos_sel, vis_sel, logit_sel = take(hidden), take(pos), take(visual), take(logits_r)
    cos_sel, sin_sel = take(cos_sin[0]), take(cos_sin[1])
    key_valid = torch.cat([torch.ones_like(past_pos, dtype=torch.bool), take(valid) & slot_valid], 1)
    causal_sel = take(causal)
    branch_sel = None if branch is None else take(branch)
    mask = _attention_mask(causal_sel, torch.cat([past_pos, causal_sel], 1), key_valid, hidden.dtype, branch_sel, branch_sel)
    out = _call_layer(layer, h_sel, mask, pos_sel, (cos_sel, sin_sel), cache)
    out = TokenDropping.straight_through(out, h_sel, logit_sel, vis_sel)
    if cache is not None:
        cache.append_positions(idx, pos_sel)
    rows = torch.arange(batch, device=hidden.device)[:, None].expand(-1, slots)
    return hidden.index_put((rows[slot_valid], order[slot_valid]), out[slot_valid])
