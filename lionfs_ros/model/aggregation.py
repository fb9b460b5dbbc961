"""Connectors (vision width -> LLM width) and the Token Aggregation Router.

The connector is VideoLLM-online's two-layer MLP (Linear, GELU, Linear); as an ``nn.Sequential``
its keys are ``0.weight``, ``0.bias``, ``2.weight``, ``2.bias``, the names the public v1+
checkpoint stores under ``connector``.

The router looks at each source's frame summary (mean of its projected tokens) and predicts, for
every token slot of the frame, softmax weights over the sources. The fused frame is the weighted
sum: it keeps the general encoder's token count (10, not 20).
"""
from __future__ import annotations

import torch
from torch import nn


class Connector(nn.Sequential):
    """``[..., in_dim] -> [..., out_dim]``."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


class TokenAggregationRouter(nn.Module):
    def __init__(self, hidden_size: int, num_sources: int, tokens_per_frame: int, router_hidden: int | None = None):
        super().__init__()
        self.num_sources = num_sources
        self.tokens_per_frame = tokens_per_frame
        width = router_hidden or hidden_size
        self.mlp = nn.Sequential(
            nn.Linear(num_sources * hidden_size, width),
            nn.GELU(),
            nn.Linear(width, tokens_per_frame * num_sources),
        )

    def weights(self, sources: list[torch.Tensor]) -> torch.Tensor:
        """``S`` tensors ``[T, n, d]`` -> per-token source weights ``[T, n, S]`` (each row sums to 1)."""
        if len(sources) != self.num_sources:
            raise ValueError(f"router expects {self.num_sources} sources, got {len(sources)}")
        summary = torch.cat([s.mean(dim=1) for s in sources], dim=-1)  # [T, S*d]
        logits = self.mlp(summary).view(-1, self.tokens_per_frame, self.num_sources)  # [T, n, S]
        return logits.float().softmax(dim=-1).to(sources[0].dtype)

    def forward(self, sources: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the fused frame ``[T, n, d]`` and the weights ``[T, n, S]``."""
        weights = self.weights(sources)
        stacked = torch.stack(sources, dim=-1)  # [T, n, d, S]
        fused = (stacked * weights[:, :, None, :]).sum(dim=-1)
        return fused, weights
