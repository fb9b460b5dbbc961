"""A KV cache for a stream whose decoder layers may hold different tokens.

In a token-dropping layer a dropped visual token skips the layer and writes no key/value, so
each layer's cache holds its own subset of the stream. Beside each layer's keys and values we
keep the original position of every entry: attention masks and trimming work from positions,
never from "the i-th entry". ``seq_length`` counts every token fed so far (the next token's
position).

The HF attention modules call ``update(key, value, layer_idx)``; that is the only method they use.
"""
from __future__ import annotations

import torch


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
