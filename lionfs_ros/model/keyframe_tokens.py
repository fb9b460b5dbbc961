"""Keyframe tokens of the thinking template: pooled general-encoder patch features.

The thinking template (``model.thinking_template``) holds runs of placeholders; each run is one
``PoolRun``: a keyframe's patch grid ``[h, w, C]`` (or a box of it) average-pooled to
``size x size`` cells, row-major; or, for a ``crop`` run, the whole patch grid of the box
re-encoded from the keyframe's pixels (``crop_box``). ``pool_runs`` turns runs into features ``[P, C]``, which
``LionFSModel.project_general`` lifts to the LLM width. The online slow thinker and the model's
training forward both call it, so a template is filled the same way in both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .vision import pool_patch_grid

WHOLE_FRAME = (0.0, 0.0, 1.0, 1.0)  # (x0, y0, x1, y1), normalized
GRID, CROP = "grid", "crop"


@dataclass(frozen=True)
class PoolRun:
    """One run of template placeholders: keyframe ``keyframe``'s ``box`` pooled to ``size x size``."""

    keyframe: int  # index into the keyframes whose grids fill the template
    kind: str  # "grid" (the whole frame) or "box" (a region)
    size: int
    box: tuple[float, float, float, float] = WHOLE_FRAME  # normalized (x0, y0, x1, y1), x right, y down
    source: str = GRID  # "grid": pooled from the keyframe's patch grid; "crop": from the box re-encoded

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
    return pool_patch_grid(grid[None, r0:r1, c0:c1], size)[0]  # [size*size, C]


def pool_runs(grids: torch.Tensor, runs: Sequence[PoolRun], crop_grids: torch.Tensor | None = None) -> torch.Tensor:
    """Keyframe patch grids ``[K, h, w, C]`` + runs (reading order) -> pooled features ``[sum size^2, C]``.

    ``crop_grids [N, h, w, C]``: the patch grids of the ``crop`` runs' crops, in the runs' order.
    """
    if not runs:
        return grids.new_zeros((0, grids.shape[-1]))
    out, crops = [], 0
    for run in runs:
        if run.source == CROP:
            out.append(pool_cells(crop_grids[crops], WHOLE_FRAME, run.size))
            crops += 1
        else:
            out.append(pool_cells(grids[run.keyframe], run.box, run.size))
    return torch.cat(out)


def crop_window(box: tuple[float, float, float, float], height: int, width: int, margin: float,
                minimum: float) -> tuple[int, int, int, int]:
    """The square pixel window ``(top, left, side, side)`` a ``crop`` run re-encodes: the box's longer
    side plus ``margin`` of it on each side, at least ``minimum`` of the frame's shorter side, centred
    on the box and shifted to lie inside the frame."""
    x0, y0, x1, y1 = box
    short = min(height, width)
    side = max((x1 - x0) * width, (y1 - y0) * height) * (1.0 + 2.0 * margin)
    side = int(round(min(max(side, minimum * short, 1.0), short)))
    centre_x, centre_y = (x0 + x1) / 2 * width, (y0 + y1) / 2 * height
    left = int(round(min(max(centre_x - side / 2, 0), width - side)))
    top = int(round(min(max(centre_y - side / 2, 0), height - side)))
    return top, left, side, side


def crop_box(rgb: np.ndarray, box: tuple[float, float, float, float], margin: float, minimum: float) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> the ``crop_window`` of ``box`` (uint8 ``[s, s, 3]``, full resolution)."""
    top, left, h, w = crop_window(box, rgb.shape[0], rgb.shape[1], margin, minimum)
    return rgb[top:top + h, left:left + w]


def crop_images(keyframes: Sequence[np.ndarray], runs: Sequence[PoolRun], margin: float,
                minimum: float) -> list[np.ndarray]:
    """The full-resolution crops of the ``crop`` runs, in reading order (``keyframes[run.keyframe]``):
    a box gets ``margin`` and ``minimum``; a tile is cut as it is."""
    return [crop_box(keyframes[run.keyframe], run.box, *((margin, minimum) if run.kind == "box" else (0.0, 0.0)))
            for run in runs if run.source == CROP]
