"""A KV cache for a stream whose decoder layers may hold different tokens.

In a token-dropping layer a dropped visual token skips the layer and writes no key/value, so
each layer's cache holds its own subset of the stream. Beside each layer's keys and values we
keep the original position of every entry: attention masks and trimming work from positions,
never from "the i-th entry". ``seq_length`` counts every token fed so far (the next token's
position).

The HF attention modules call ``update(key, value, layer_idx)``; that is the only method they use.

The online engine also forks a cache (a slow thinker writes on the fork while the stream goes on
in the original), evicts entries by position and renumbers positions (bounded memory on an
unbounded stream). None of these write into an existing tensor: a fork shares tensors safely.
"""
from __future__ import annotations

from typing import Callable

import torch

KeyRotation = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(keys [B, H, n, D], delta [B, n]) -> keys`` as if computed at ``position + delta`` (RoPE)."""


class StreamKVCache:
    def __init__(self, num_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * num_layers  # each [B, H_kv, n_i, head_dim]
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.positions: list[torch.Tensor | None] = [None] * num_layers  # each [B, n_i] long
        self.seq_length = 0

    @property
    def num_layers(self) -> int:
        return len(self.keys)

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer_idx] is None:
            self.keys[layer_idx], self.values[layer_idx] = key, value
        else:
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], key], dim=-2)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], value], dim=-2)
        return self.keys[layer_idx], self.values[layer_idx]

    def append_positions(self, layer_idx: int, positions: torch.Tensor) -> None:
        old = self.positions[layer_idx]
        self.positions[layer_idx] = positions if old is None else torch.cat([old, positions], dim=-1)

    def layer_positions(self, layer_idx: int, batch: int, device: torch.device) -> torch.Tensor:
        """Positions of layer ``layer_idx``'s entries, ``[B, n_i]`` (empty when nothing is cached)."""
        pos = self.positions[layer_idx]
        if pos is None:
            return torch.empty(batch, 0, dtype=torch.long, device=device)
        return pos

    def layer_length(self, layer_idx: int) -> int:
        pos = self.positions[layer_idx]
        return 0 if pos is None else pos.shape[-1]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seq_length

    def trim(self, length: int) -> "StreamKVCache":
        """A new cache holding only the tokens at positions ``< length`` (the stream's first ``length`` tokens).

        The original is left untouched, so a caller can branch (e.g. feed alternative futures).
        """
        if not 0 <= length <= self.seq_length:
            raise ValueError(f"cannot trim a cache of {self.seq_length} tokens to {length}")
        out = StreamKVCache(self.num_layers)
        out.seq_length = length
        for i, pos in enumerate(self.positions):
            if pos is None:
                continue
            keep = int((pos[0] < length).sum())  # positions grow along the cache, so this is a prefix
            out.positions[i] = pos[:, :keep]
            out.keys[i] = self.keys[i][..., :keep, :]
            out.values[i] = self.values[i][..., :keep, :]
        return out

    def num_entries(self) -> list[int]:
        """How many tokens each layer holds (smaller in dropping layers)."""
        return [self.layer_length(i) for i in range(self.num_layers)]

    def fork(self) -> "StreamKVCache":
        """A cache holding the same entries that grows independently (``update`` concatenates, never writes in place)."""
        out = StreamKVCache(self.num_layers)
        out.keys, out.values, out.positions = list(self.keys), list(self.values), list(self.positions)
        out.seq_length = self.seq_length
        return out

    def retain(self, keep: torch.Tensor) -> None:
        """Keep only the entries whose position ``p`` has ``keep[p]`` (bool ``[seq_length]``); in every layer."""
        if keep.shape != (self.seq_length,):
            raise ValueError(f"keep mask has shape {tuple(keep.shape)}, expected ({self.seq_length},)")
        for i, pos in enumerate(self.positions):
            if pos is None:
                continue
            idx = keep.to(pos.device)[pos[0]].nonzero().squeeze(-1)  # [m] entry indices, in order
            self.positions[i] = pos[:, idx]
            self.keys[i] = self.keys[i].index_select(-2, idx.to(self.keys[i].device))
            self.values[i] = self.values[i].index_select(-2, idx.to(self.values[i].device))

    def renumber(self, new_position: torch.Tensor, seq_length: int, rotate: KeyRotation | None = None) -> None:
        """Move each entry from position ``p`` to ``new_position[p]`` (long ``[seq_length]``, increasing on the
        entries held); keys are re-rotated by the shift when ``rotate`` is given. ``seq_length`` becomes the next position."""
        for i, pos in enumerate(self.positions):
            if pos is None:
                continue
            moved = new_position.to(pos.device)[pos]  # [B, n_i]
            if rotate is not None:
                self.keys[i] = rotate(self.keys[i], moved - pos)
            self.positions[i] = moved
        self.seq_length = seq_length

    def nbytes(self) -> int:
        """Bytes held by keys, values and positions."""
        tensors = [t for group in (self.keys, self.values, self.positions) for t in group if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)
