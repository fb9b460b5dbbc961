"""Token Dropping Router: mixture-of-depths over visual tokens, decided frame by frame.

Why per frame. A top-k over the whole sequence (as in the paper's released code) lets a token's
fate depend on tokens that arrive later, so an online stream fed frame by frame could not make
the same decisions as training did. Here each frame's visual tokens compete only among
themselves: a frame keeps ``k = round_half_up((1 - beta) * tokens_per_frame)`` of them and text
tokens always pass. A frame arrives whole in one step, so the decision is causal and feeding a
stream frame by frame gives exactly the decisions of one full-sequence forward.

A dropped token skips the layer (residual passthrough) and writes no key/value there; kept
tokens keep their original positions (rotary embeddings and the causal mask use them).

Gradient to the router: a kept visual token's layer output is ``out + (out - h) * (p - sg(p))``
with ``p`` its router probability and ``sg`` stop-gradient. The added term is exactly zero in
value, so the forward pass is the plain layer's (``beta = 0`` reproduces the backbone bit for
bit), while the router receives the gradient that scaling the layer's update by ``p`` would give.
The router is also trained by an auxiliary loss: binary cross-entropy between its logits and
the kept/dropped decisions over visual tokens.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def frame_capacity(tokens_per_frame: int, beta: float) -> int:
    """Visual tokens a frame keeps in a dropping layer (round half up)."""
    return int(math.floor((1.0 - beta) * tokens_per_frame + 0.5))


def frame_top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the ``keep`` highest scores along the last dim; equal scores go to the earlier index (a stable
    descending sort: the set CUDA's topk keeps, while CPU's topk leaves ties to ``std::nth_element``)."""
    return scores.sort(dim=-1, descending=True, stable=True).indices[..., :keep]


class TokenDroppingRouter(nn.Module):
    """Scores tokens for one decoder layer: ``[B, L, d] -> [B, L]`` logits (keep if high)."""

    def __init__(self, hidden_size: int, init_std: float):
        super().__init__()
        self.norm = nn.RMSNorm(hidden_size)
        self.proj = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.proj.weight, std=init_std)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(hidden)).squeeze(-1)


class TokenDropping(nn.Module):
    """The routers of all dropping layers and the per-frame capacity rule."""

    def __init__(self, hidden_size: int, layers: list[int], tokens_per_frame: int, beta: float, init_std: float):
        super().__init__()
        self.layers = list(layers)
        self.tokens_per_frame = tokens_per_frame
        self.keep = frame_capacity(tokens_per_frame, beta)
        self.routers = nn.ModuleDict({str(i): TokenDroppingRouter(hidden_size, init_std) for i in self.layers})

    def router(self, layer_idx: int) -> TokenDroppingRouter | None:
        key = str(layer_idx)
        return self.routers[key] if key in self.routers else None

    def select(self, logits: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Kept mask ``[B, L]``: every non-visual token, plus each frame's top-``keep`` visual tokens.

        ``visual`` marks visual tokens ``[B, L]``; in each row they come in whole frames of
        ``tokens_per_frame`` consecutive visual tokens (counting visual tokens only).
        """
        kept = ~visual
        n = self.tokens_per_frame
        for row in range(logits.shape[0]):
            idx = visual[row].nonzero().squeeze(-1)  # [V]
            if idx.numel() % n:
                raise ValueError(f"{idx.numel()} visual tokens in a row is not a whole number of {n}-token frames")
            if idx.numel() == 0:
                continue
            frames = idx.view(-1, n)  # [F, n]
            top = frame_top(logits[row, frames], self.keep)  # [F, keep]
            kept[row, frames.gather(1, top).flatten()] = True
        return kept

    @staticmethod
    def aux_loss(logits: torch.Tensor, kept: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """BCE between router logits and the decisions, over visual tokens (0 when there are none)."""
        if not visual.any():
            return logits.new_zeros((), dtype=torch.float32)
        return F.binary_cross_entropy_with_logits(logits[visual].float(), kept[visual].float())

    @staticmethod
    def straight_through(out: torch.Tensor, hidden: torch.Tensor, logits: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """``out + (out - hidden) * (p - sg(p))`` on visual tokens: same value as ``out``, router in the graph."""
        prob = torch.sigmoid(logits.float())
        gate = torch.where(visual, prob - prob.detach(), torch.zeros_like(prob)).to(out.dtype)
        return out + (out - hidden) * gate[..., None]
