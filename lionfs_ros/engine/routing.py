"""Token dropping with fixed shapes: a feed's ``DropPlan`` and the kept tokens of a routed layer.

Which tokens of a feed are visual is known on the host, so a plan fixes the frames' token indices and
the number ``K`` of tokens a dropping layer runs on (text + ``keep`` per frame). On the device: router
logits, each frame's top-``keep`` (``model.token_dropping.frame_top``: ties to the earlier token), the
kept mask, and the kept indices in sequence order by a cumulative sum and a scatter (no ``nonzero``,
no host sync). ``kept_indices`` is the torch form (any device, any feed, and the reference of
``kernels/token_routing.py``, which the static decoder runs instead where it runs Triton).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..model.token_dropping import frame_top

TEXT_FRAME = -1  # DropPlan.frame_of of a token every layer keeps


@dataclass
class DropPlan:
    """Token dropping for one feed, fixed by which of its ``M`` tokens are visual (known on the host)."""

    text: torch.Tensor  # [M] bool: tokens every layer keeps (not visual)
    frames: torch.Tensor  # [F, n] long: the visual tokens' indices, frame by frame
    frame_of: torch.Tensor  # [M] int32: each token's frame, TEXT_FRAME for text
    steps: torch.Tensor  # [M] long: 0 .. M-1
    kept: int  # K: tokens a dropping layer runs on
    counts: torch.Tensor  # [tracks] long: tokens each track gains (M on the full track, K on dropping ones)


def drop_plan(visual: list[bool], tokens_per_frame: int, keep: int, track_routed: list[bool],
              device: torch.device) -> DropPlan | None:
    """The plan for a feed with this visual mask; None when every token is kept (no visual tokens, or keep = n)."""
    index = [i for i, v in enumerate(visual) if v]
    if len(index) % tokens_per_frame:
        raise ValueError(f"{len(index)} visual tokens in a row is not a whole number of {tokens_per_frame}-token frames")
    if not index or keep >= tokens_per_frame:
        return None
    m, frames = len(visual), len(index) // tokens_per_frame
    kept = m - len(index) + frames * keep
    counts = [kept if routed else m for routed in track_routed]
    frame_of = [TEXT_FRAME] * m
    for k, i in enumerate(index):
        frame_of[i] = k // tokens_per_frame
    return DropPlan(
        text=torch.tensor([not v for v in visual], dtype=torch.bool, device=device),
        frames=torch.tensor(index, dtype=torch.long, device=device).view(frames, tokens_per_frame),
        frame_of=torch.tensor(frame_of, dtype=torch.int32, device=device),
        steps=torch.arange(m, device=device), kept=kept, counts=torch.tensor(counts, dtype=torch.long, device=device))


def kept_indices(router: nn.Module, residual: torch.Tensor, plan: DropPlan, keep: int) -> torch.Tensor:
    """Kept token indices ``[B, K]`` of ``residual [B, M, d]``, in sequence order: text, plus each frame's
    top-``keep`` by router logit."""
    b = residual.shape[0]
    logits = router(residual)  # [B, M]
    top = frame_top(logits[:, plan.frames], keep)  # [B, F, keep]
    chosen = plan.frames.expand(b, -1, -1).gather(2, top).flatten(1)  # [B, F*keep]
    kept = plan.text.expand(b, -1).scatter(1, chosen, True)  # [B, M]
    dest = torch.where(kept, kept.long().cumsum(1) - 1, plan.kept)  # dropped tokens go to a spare column
    order = torch.empty(b, plan.kept + 1, dtype=torch.long, device=residual.device)
    return order.scatter_(1, dest, plan.steps.expand(b, -1))[:, :plan.kept]
