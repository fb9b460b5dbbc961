"""Bounded memory: which parts of the stream context to evict when the KV budget is exceeded.

The context is a sequence of segments (the ledger): the system prompt, one segment per decided
frame (its interval token and placeholders), and text (stream brackets, user turns, assistant
turns). When the entries held exceed ``budget``, segments are evicted until at most
``budget - chunk`` remain (the chunk makes compactions rare), in this order:

1. frames older than the ``keep_recent`` most recent ones, oldest first (frames are the bulk:
   ``tokens_per_frame + 1`` tokens every half second);
2. text, oldest first, only if old frames were not enough (text is cheap context: past answers
   and questions carry what the assistant said, so they outlive the frames around them).

The system prompt and the ``keep_recent`` newest frames are never evicted.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

SYSTEM = "system"
FRAME = "frame"
TEXT = "text"


@dataclass
class Segment:
    kind: str  # SYSTEM, FRAME or TEXT
    start: int  # position of its first token (positions of a segment are consecutive)
    length: int
    time: float | None = None  # frame time, or the stream time text was added at


@dataclass
class EvictionPlan:
    drop: list[int]  # segment indices, ascending
    tokens: int


def plan_eviction(segments: list[Segment], budget: int, chunk: int, keep_recent: int) -> EvictionPlan:
    held = sum(s.length for s in segments)
    if held <= budget:
        return EvictionPlan([], 0)
    need = held - (budget - chunk)
    frames = [i for i, s in enumerate(segments) if s.kind == FRAME]
    old_frames = frames[:-keep_recent] if keep_recent else frames
    texts = [i for i, s in enumerate(segments) if s.kind == TEXT]
    drop, freed = [], 0
    for i in old_frames + texts:
        if freed >= need:
            break
        drop.append(i)
        freed += segments[i].length
    return EvictionPlan(sorted(drop), freed)


def keep_mask(segments: list[Segment], drop: list[int], next_position: int) -> torch.Tensor:
    """Bool ``[next_position]``: False on the positions of the dropped segments."""
    keep = torch.ones(next_position, dtype=torch.bool)
    for i in drop:
        s = segments[i]
        keep[s.start:s.start + s.length] = False
    return keep


def apply_plan(segments: list[Segment], plan: EvictionPlan, reindex: bool) -> list[Segment]:
    """The ledger after eviction; with ``reindex`` the kept segments are renumbered back to back from 0."""
    dropped = set(plan.drop)
    kept = [s for i, s in enumerate(segments) if i not in dropped]
    if reindex:
        position = 0
        for s in kept:
            s.start = position
            position += s.length
    return kept
