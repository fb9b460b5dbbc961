"""Which encoder a frame feeds: each encoder samples the stream on its own time grid.

The general encoder's grid has points ``t0 + k / general_fps`` (t0: the first frame). A frame is
*general* if it is the first frame at or after the next grid point (``rate_tolerance`` of a
period early still counts, for jittery cameras); the next point is then the first one after
that frame, so gaps and drops re-anchor by themselves and rates never drift. The egocentric grid
works the same at ``ego_fps``; a general frame always feeds the ego encoder too, so the ego window
of a decided frame ends at that frame. Every other frame is skipped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

GENERAL = "general"
EGO = "ego"
SKIP = "skip"


@dataclass
class _Grid:
    period: float
    tolerance: float  # seconds
    origin: float | None = None
    next_index: int = 0

    def due(self, t: float) -> bool:
        if self.origin is None:
            return True
        return t >= self.origin + self.next_index * self.period - self.tolerance

    def take(self, t: float) -> None:
        if self.origin is None:
            self.origin = t
        # The first grid point strictly after t (with the same tolerance), so one frame takes one point.
        self.next_index = max(self.next_index + 1, math.floor((t - self.origin + self.tolerance) / self.period) + 1)


class RateGate:
    def __init__(self, general_fps: float, ego_fps: float | None, tolerance: float):
        self.general = _Grid(1.0 / general_fps, tolerance / general_fps)
        self.ego = _Grid(1.0 / ego_fps, tolerance / ego_fps) if ego_fps else None

    def classify(self, t: float) -> str:
        """GENERAL, EGO or SKIP for a frame at time ``t`` (times strictly increase); updates the grids."""
        if self.general.due(t):
            self.general.take(t)
            if self.ego is not None:
                self.ego.take(t)
            return GENERAL
        if self.ego is not None and self.ego.due(t):
            self.ego.take(t)
            return EGO
        return SKIP
