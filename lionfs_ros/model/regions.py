"""Interaction regions on keyframes, for the slow thinker's box tokens (part of the model: its
settings are ``thinking.regions`` in the model's ``config.json``, read by training and the engine).

``Region`` is one normalized box. ``RegionProposer`` is the plug: given the keyframes (RGB, oldest first) and their patch features
it returns, per keyframe, normalized boxes. A hand/object detector can implement it later. ``make_proposer``
builds the one ``regions.proposer`` names: the default below, or ``ObjectScaleProposer`` (object-sized squares).

The default, ``SaliencyMotionProposer``, needs no weights. On the encoder's patch grid (``h x w``
cells) it scores each cell by
- motion: mean absolute grey-level change against the previous keyframe (hands and the objects
  they move are what changes between keyframes), and
- feature distinctiveness: distance of the cell's feature from the frame's mean feature (what
  stands out from the background),
each scaled to [0, 1], mixed by ``motion_weight`` (the first keyframe has no motion term). It then
takes peaks greedily: the highest cell not yet covered, grown one row or column at a time while
the new cells reach ``grow_fraction`` of the peak (at most ``max_cells`` per side); cells of a
taken region are not used again. Peaks under ``min_score`` end the search.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .configuration_lionfs import RegionConfig
from .keyframe_tokens import pool_cells

EPS = 1e-6
MOTION, SALIENT = "motion", "salient"
SURROUND = 3  # ObjectScaleProposer: a blob's surround window is this many times its own, per side


@dataclass(frozen=True)
class Region:
    """A normalized box on a keyframe (0..1, x right, y down) whose features became box tokens."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str
    score: float
    tag: str = ""  # what the model's crop reader read there (``keyframes.region_tags``): "red cube labelled K"

    @property
    def description(self) -> str:
        """``label``, or ``"label: tag"`` when the region has a tag (``motion: red cube labelled K``)."""
        return f"{self.label}: {self.tag}" if self.tag else self.label

    def as_tuple(self) -> tuple[float, float, float, float, str, float]:
        """What the engine hands out (``ResponseUpdate.regions``, the region messages' ``label``): the label
        carries the tag after a colon (``description``), so every consumer keeps its fields."""
        return (self.x0, self.y0, self.x1, self.y1, self.description, self.score)


class RegionProposer(ABC):
    @abstractmethod
    def propose(self, keyframes: list[np.ndarray], grids: torch.Tensor, max_regions: int) -> list[list[Region]]:
        """``keyframes``: RGB uint8 ``[H, W, 3]`` each; ``grids``: patch features ``[K, h, w, C]``; one list per keyframe."""


def _unit(x: np.ndarray) -> np.ndarray:
    low, high = float(x.min()), float(x.max())
    return np.zeros_like(x) if high - low < EPS else (x - low) / (high - low)


def _colour_cells(rgb: np.ndarray, h: int, w: int) -> torch.Tensor:
    """Mean colour of each of ``h x w`` cells, ``[h, w, 3]`` in [0, 1]."""
    cells = Image.fromarray(rgb).resize((w, h), Image.Resampling.BOX)
    return torch.from_numpy(np.asarray(cells, dtype=np.float32) / 255.0)


def _grey_cells(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    """Mean grey level of each of ``h x w`` cells, in [0, 1]."""
    grey = Image.fromarray(rgb).convert("L").resize((w, h), Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float32) / 255.0


class SaliencyMotionProposer(RegionProposer):
    def __init__(self, config: RegionConfig | None = None):
        self.cfg = config or RegionConfig()

    def saliency(self, rgb: np.ndarray, previous: np.ndarray | None, grid: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell saliency ``[h, w]`` in [0, 1] and its motion part (zeros without a previous keyframe).

        ``grid``: the keyframe's patch features ``[h, w, C]``; with ``features: pixels`` only its
        shape is read and each cell's mean colour stands in for its feature."""
        h, w, _ = grid.shape
        feats = _colour_cells(rgb, h, w) if self.cfg.features == "pixels" else grid.float().cpu()
        distinct = _unit((feats - feats.mean(dim=(0, 1))).norm(dim=-1).numpy())
        if previous is None:
            return distinct, np.zeros_like(distinct)
        motion = _unit(np.abs(_grey_cells(rgb, h, w) - _grey_cells(previous, h, w)))
        weight = self.cfg.motion_weight
        return weight * motion + (1.0 - weight) * distinct, motion

    def _grow(self, sal: np.ndarray, row: int, col: int) -> tuple[int, int, int, int]:
        h, w = sal.shape
        floor = self.cfg.grow_fraction * sal[row, col]
        r0, r1, c0, c1 = row, row + 1, col, col + 1  # half-open cell box
        grown = True
        while grown:
            grown = False
            for side in ("up", "down", "left", "right"):
                if side in ("up", "down") and r1 - r0 >= self.cfg.max_cells:
                    continue
                if side in ("left", "right") and c1 - c0 >= self.cfg.max_cells:
                    continue
                if side == "up" and r0 > 0 and sal[r0 - 1, c0:c1].max() >= floor:
                    r0, grown = r0 - 1, True
                elif side == "down" and r1 < h and sal[r1, c0:c1].max() >= floor:
                    r1, grown = r1 + 1, True
                elif side == "left" and c0 > 0 and sal[r0:r1, c0 - 1].max() >= floor:
                    c0, grown = c0 - 1, True
                elif side == "right" and c1 < w and sal[r0:r1, c1].max() >= floor:
                    c1, grown = c1 + 1, True
        return r0, r1, c0, c1

    def regions_of(self, rgb, previous, grid, max_regions: int) -> list[Region]:
        sal, motion = self.saliency(rgb, previous, grid)
        h, w = sal.shape
        free = sal.copy()
        out: list[Region] = []
        for row, col, peak in _peaks(free, self.cfg.min_score, max_regions):
            r0, r1, c0, c1 = self._grow(np.where(free > 0, sal, 0.0), row, col)
            free[r0:r1, c0:c1] = 0.0
            label = _label(previous, motion, sal, row, col)
            out.append(Region(c0 / w, r0 / h, c1 / w, r1 / h, label, round(peak, 4)))
        return out

    def propose(self, keyframes, grids, max_regions):
        return [
            self.regions_of(rgb, keyframes[k - 1] if k else None, grids[k], max_regions)
            for k, rgb in enumerate(keyframes)
        ]


def _peaks(free: np.ndarray, min_score: float, max_regions: int):
    """Greedy peaks ``(row, col, score)`` of ``free``, highest first, while at least ``min_score``: at most
    ``max_regions``; the caller zeroes what each peak takes before the next is drawn."""
    for _ in range(max_regions):
        row, col = np.unravel_index(int(free.argmax()), free.shape)
        peak = float(free[row, col])
        if peak < min_score:
            return
        yield row, col, peak


def _label(previous, motion: np.ndarray, sal: np.ndarray, row: int, col: int) -> str:
    """MOTION where the peak's cell owes its score to motion (there is a previous keyframe), else SALIENT."""
    return MOTION if previous is not None and motion[row, col] >= sal[row, col] else SALIENT


def _box_mean(x: torch.Tensor, ky: int, kx: int) -> torch.Tensor:
    """Mean of ``x`` ``[h, w]`` over a ``ky x kx`` window (odd sides) centred on each cell; beyond the frame's
    edge the edge cells repeat (what enters the frame, an arm, runs on past it)."""
    padded = F.pad(x[None, None], (kx // 2, kx // 2, ky // 2, ky // 2), mode="replicate")
    return F.avg_pool2d(padded, (ky, kx), stride=1)[0, 0]


def _odd(n: float) -> int:
    return 2 * int(round(n) // 2) + 1


class ObjectScaleProposer(RegionProposer):
    """Regions at the size of the synthetic world's objects (``regions.proposer: object_scale``); reads only
    the pixels (``regions.features: pixels``; ``grids`` is accepted for the plug's signature, unread).

    On ``cell_grid x cell_grid`` cells, a cell stands out by its colour's distance from its ROW's median
    colour (the wall and the table are horizontal bands: a row's median is its background), mixed with
    motion as ``SaliencyMotionProposer`` does. A peak is a blob of an object's size: the mean saliency
    over a window of half a region's side minus the mean over the ring around it (``SURROUND`` times as wide;
    an arm or a band edge runs on through the ring, an object does not). Peaks are taken greedily, each an
    ``object_size`` square centred on it (shifted inside the frame); cells within a region's square are not
    peaks again (non-max suppression). Peaks under ``min_score`` (scores scaled to [0, 1]) end the search."""

    def __init__(self, config: RegionConfig | None = None):
        self.cfg = config or RegionConfig(proposer="object_scale", features="pixels")

    def saliency(self, rgb: np.ndarray, previous: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell saliency ``[g, g]`` in [0, 1] and its motion part (zeros without a previous keyframe)."""
        g = self.cfg.cell_grid
        cells = _colour_cells(rgb, g, g)  # [g, g, 3]
        background = cells.median(dim=1, keepdim=True).values  # [g, 1, 3]: each row's background colour
        distinct = _unit((cells - background).norm(dim=-1).numpy())
        if previous is None:
            return distinct, np.zeros_like(distinct)
        motion = _unit(np.abs(_grey_cells(rgb, g, g) - _grey_cells(previous, g, g)))
        weight = self.cfg.motion_weight
        return weight * motion + (1.0 - weight) * distinct, motion

    def regions_of(self, rgb: np.ndarray, previous: np.ndarray | None, max_regions: int) -> list[Region]:
        height, width = rgb.shape[:2]
        g, side = self.cfg.cell_grid, self.cfg.object_size * min(height, width)  # side: a region's, in pixels
        half_w, half_h = side / width / 2, side / height / 2  # normalized
        sal, motion = self.saliency(rgb, previous)
        ky, kx = _odd(half_h * g), _odd(half_w * g)  # the blob window: half a region's side, in cells
        inner = _box_mean(torch.from_numpy(sal), ky, kx)
        outer = _box_mean(torch.from_numpy(sal), SURROUND * ky, SURROUND * kx)
        ring = (outer * SURROUND**2 - inner) / (SURROUND**2 - 1)  # the ring's mean (areas SURROUND^2 : 1)
        free = _unit((inner - ring).numpy())
        ny, nx = int(np.ceil(half_h * g)), int(np.ceil(half_w * g))  # suppression half-sides, in cells
        out: list[Region] = []
        for row, col, peak in _peaks(free, self.cfg.min_score, max_regions):
            free[max(row - ny, 0):row + ny + 1, max(col - nx, 0):col + nx + 1] = 0.0
            cx = min(max((col + 0.5) / g, half_w), 1.0 - half_w)
            cy = min(max((row + 0.5) / g, half_h), 1.0 - half_h)
            label = _label(previous, motion, sal, row, col)
            out.append(Region(cx - half_w, cy - half_h, cx + half_w, cy + half_h, label, round(peak, 4)))
        return out

    def propose(self, keyframes, grids, max_regions):
        return [self.regions_of(rgb, keyframes[k - 1] if k else None, max_regions) for k, rgb in enumerate(keyframes)]


def make_proposer(config: RegionConfig) -> RegionProposer:
    """The proposer ``regions.proposer`` names (``saliency_motion``, the default, or ``object_scale``)."""
    return ObjectScaleProposer(config) if config.proposer == "object_scale" else SaliencyMotionProposer(config)


def pool_box(grid: torch.Tensor, region: Region, box_grid: int) -> torch.Tensor:
    """Patch features ``[h, w, C]`` inside ``region`` -> ``[box_grid**2, C]`` (adaptive average pool, row-major)."""
    return pool_cells(grid, (region.x0, region.y0, region.x1, region.y1), box_grid)
