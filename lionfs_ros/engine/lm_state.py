"""The LLM side of one context: feed tokens, read the last logits, fork, evict.

``LMState`` is what the engine and the slow thinker drive; two implementations:
- ``DynamicLMState``: the model's own ``step`` over a ``StreamKVCache`` (any backbone, token
  dropping included; CPU and GPU). A fork shares tensors and costs nothing.
- ``StaticLMState`` (``cuda_graphs.py``): preallocated KV buffers and CUDA graphs (GPU, Llama-family
  backbones without token dropping).

Positions after eviction (``evict(keep, reindex)``):
- ``reindex=True``: the kept entries are renumbered 0, 1, 2, ... in order and their keys are
  re-rotated by the shift (RoPE is a rotation by ``position * inv_freq``, so rotating a cached key
  by ``new - old`` gives exactly the key a fresh pass at the new position would cache). The next
  token's position is then the number of entries held, so positions stay below the KV budget plus
  one feed on a stream of any length.
- ``reindex=False``: positions keep growing (gaps where entries were evicted); only for streams
  that stay under the backbone's ``max_position_embeddings``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import torch

from lionfs_ros.model.kv_cache import StreamKVCache

# RoPE variants whose frequencies change with sequence length: a cached key cannot be re-rotated.
LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope")


class LMState(ABC):
    @property
    @abstractmethod
    def next_position(self) -> int:
        """Position of the next token fed."""

    @property
    @abstractmethod
    def num_tokens(self) -> int:
        """KV entries held in a full (non-dropping) layer: the budget's unit."""

    @abstractmethod
    def feed(self, ids: Sequence[int], embeds: torch.Tensor | None = None, visual: torch.Tensor | None = None,
             readout: Callable[[torch.Tensor], Any] | None = None) -> Any:
        """Append ``ids`` (placeholders filled in order by ``embeds [P, d]``); return the last position's logits ``[V]``.

        ``visual [L]`` marks the tokens a dropping layer may drop (default: the placeholders). ``readout``: a function
        of those logits whose result is returned instead (e.g. the decision read back to the host); a state that runs
        on a stream of its own queues its kernels behind the step's, before it waits for the step."""

    @abstractmethod
    def fork(self) -> "LMState":
        """A state with the same entries that grows on its own (the slow thinker writes on it)."""

    @abstractmethod
    def evict(self, keep: torch.Tensor, reindex: bool) -> None:
        """Drop entries at positions ``p`` with ``not keep[p]`` (bool ``[next_position]``); renumber if ``reindex``."""

    @abstractmethod
    def nbytes(self) -> int:
        """Bytes this state holds for its context (allocated, for preallocated states)."""

    def release(self) -> None:
        """Give back what a fork holds (preallocated buffers); a no-op for shared-tensor forks."""


def rope_rotation(rotary_emb: torch.nn.Module):
    """``(keys [B, H, n, D], delta [B, n]) -> keys`` rotated by ``delta`` positions (HF ``rotate_half`` layout).

    Uses the rotary module's ``inv_freq`` without its attention scaling: the cached keys already
    carry that factor once, and a rotation must not apply it again.
    """
    rope_type = getattr(rotary_emb, "rope_type", "default")
    if rope_type in LENGTH_DEPENDENT_ROPE:
        raise ValueError(f"rope_type {rope_type!r} changes frequencies with length: use position_mode='grow'")
    inv_freq = rotary_emb.inv_freq.float()  # [D/2]

    def rotate(keys: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        angle = delta.to(device=keys.device, dtype=torch.float32)[..., None] * inv_freq.to(keys.device)  # [B, n, D/2]
        angle = torch.cat([angle, angle], dim=-1)[:, None]  # [B, 1, n, D]
        k = keys.float()
        half = k.shape[-1] // 2
        rotated_half = torch.cat([-k[..., half:], k[..., :half]], dim=-1)
        return (k * angle.cos() + rotated_half * angle.sin()).to(keys.dtype)

    return rotate


def renumbering(keep: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Compact positions: kept position ``p`` -> number of kept positions before it. Returns (map, count)."""
    kept = keep.long()
    return kept.cumsum(0) - kept, int(kept.sum())


class DynamicLMState(LMState):
    def __init__(self, model, cache: StreamKVCache | None = None):
        self.model = model
        self.cache = cache if cache is not None else model.new_cache()
        self._rotate = None

    @property
    def next_position(self) -> int:
        return self.cache.seq_length

    @property
    def num_tokens(self) -> int:
        return max(self.cache.num_entries(), default=0)

    @torch.no_grad()
    def feed(self, ids, embeds=None, visual=None, readout=None):
        ids_t = torch.as_tensor(list(ids), dtype=torch.long)[None]  # [1, L]
        frames = None if embeds is None else embeds.reshape(1, -1, embeds.shape[-1])  # [1, P, d]
        inputs, visual_mask = self.model.joint_embed(ids_t, frames)
        if visual is not None:
            visual_mask = torch.as_tensor(visual, dtype=torch.bool, device=inputs.device).reshape(1, -1)
        logits = self.model.step(inputs, visual_mask, self.cache).logits[0, -1]  # [V]
        return logits if readout is None else readout(logits)

    def fork(self) -> "DynamicLMState":
        return DynamicLMState(self.model, self.cache.fork())

    def evict(self, keep: torch.Tensor, reindex: bool) -> None:
        self.cache.retain(keep)
        if reindex:
            if self._rotate is None:
                self._rotate = rope_rotation(self.model.llm.get_decoder().rotary_emb)
            new_position, count = renumbering(keep)
            self.cache.renumber(new_position, count, self._rotate)

    def nbytes(self) -> int:
        return self.cache.nbytes()
