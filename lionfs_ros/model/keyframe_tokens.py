"""Keyframe tokens of the thinking template: pooled general-encoder patch features.

The thinking template (``model.thinking_template``) holds runs of placeholders; each run is one
``PoolRun``: a keyframe's patch grid ``[h, w, C]`` (or a box of it) average-pooled to
``size x size`` cells, row-major. ``pool_runs`` turns runs into features ``[P, C]``, which
``LionFSModel.project_general`` lifts to the LLM width. The online slow thinker and the model's
training forward both call it, so a template is filled the same way in both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

WHOLE_FRAME = (0.0, 0.0, 1.0, 1.0)  # (x0, y0, x1, y1), normalized


@dataclass(frozen=True)
class PoolRun:
    """One run of template placeholders: keyframe ``keyframe``'s ``box`` pooled to ``size x size``."""

    keyframe: int  # index into the keyframes whose grids fill the template
    kind: str  # "grid" (the whole frame) or "box" (a region)
    size: int
    box: tuple[float, float, float, float] = WHOLE_FRAME  # normalized (x0, y0, x1, y1), x right, y down

    @property
    def num_tokens(self) -> int:
        return self.size * self.size


def pool_cells(grid: torch.Tensor, box: tuple[float, float, float, float], size: int) -> torch.Tensor:
    """Patch features ``[h, w, C]`` inside the normalized ``box`` -> ``[size*size, C]`` (adaptive average pool, row-major)."""
    h, w, _ = grid.shape
    x0, y0, x1, y1 = box
    r0 = min(int(math.floor(y0 * h)), h - 1)
    c0 = min(int(math.floor(x0 * w)), w - 1)
    r1 = max(int(math.ceil(y1 * h)), r0 + 1)
    c1 = max(int(math.ceil(x1 * w)), c0 + 1)
    crop = grid[r0:r1, c0:c1].permute(2, 0, 1)  # [C, rh, rw]
    return F.adaptive_avg_pool2d(crop, (size, size)).flatten(1).transpose(0, 1)


def pool_runs(grids: torch.Tensor, runs: Sequence[PoolRun]) -> torch.Tensor:
    """Keyframe patch grids ``[K, h, w, C]`` + runs (reading order) -> pooled features ``[sum size^2, C]``."""
    if not runs:
        return grids.new_zeros((0, grids.shape[-1]))
    return torch.cat([pool_cells(grids[run.keyframe], run.box, run.size) for run in runs])
