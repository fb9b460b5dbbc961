"""The thinking template's regions (``thinking_template``'s helpers, shared by the engine and training): proposing
them on the keyframes, cutting their crops at full resolution, the crop reader's tags, and the question's pick among
the trigger keyframe's proposals (``keyframes.question_candidates``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .configuration_lionfs import KeyframeConfig
from .keyframe_tokens import CROP, PoolRun, crop_images
from .region_order import asked_last, matched_index
from .regions import Region, RegionProposer


def read_tags(model, runs: Sequence[PoolRun], crop_grids: torch.Tensor | None,
              regions: Sequence[Sequence[Region]]) -> list[list[str]]:
    """The crop reader's tag of every region (``tags[k][r]``, as ``template_layout`` takes them) from the patch
    grids ``[N, h, w, C]`` of the ``crop`` runs ``runs`` (reading order; tiles are read by nobody)."""
    crop_runs = [run for run in runs if run.source == CROP]
    boxes = [i for i, run in enumerate(crop_runs) if run.kind == "box"]
    read = iter(model.region_tags(crop_grids[boxes]) if boxes else [])
    return [[next(read) for _ in rs] for rs in regions]


def crop_grids_in_order(read: Sequence[PoolRun], runs: Sequence[PoolRun], crop_grids: torch.Tensor | None
                        ) -> torch.Tensor | None:
    """The ``crop`` runs' patch grids ``[N, h, w, C]``, read in the order of the runs ``read``, in the order of
    ``runs`` (the same crops, laid out again: ``keyframes.region_order`` may have moved a region)."""
    if crop_grids is None:
        return None
    where: dict[tuple, list[int]] = {}
    for i, run in enumerate(r for r in read if r.source == CROP):
        where.setdefault((run.keyframe, run.kind, run.box), []).append(i)
    order = [where[(run.keyframe, run.kind, run.box)].pop(0) for run in runs if run.source == CROP]
    return crop_grids[order]


def crop_pixels(processor, keyframes: Sequence[np.ndarray], runs: Sequence[PoolRun],
                config: KeyframeConfig) -> np.ndarray:
    """The ``crop`` runs' boxes cut from the keyframes (full resolution) and resized by the general
    encoder's ``ImageProcessor``: uint8 ``[N, S, S, 3]`` in reading order (training and the engine alike)."""
    crops = crop_images(keyframes, runs, config.crop_margin, config.crop_min)
    if not crops:
        return np.zeros((0, processor.image_size, processor.image_size, 3), np.uint8)
    return np.stack([processor.resize_one(np.ascontiguousarray(crop)) for crop in crops])


def trigger_tags(model, keyframes, regions: Sequence[Region], config: KeyframeConfig) -> list[str]:
    """The crop reader's tags of ``regions`` on the trigger keyframe (the last), their crops cut and read as the
    template's are."""
    if not regions:
        return []
    runs = [PoolRun(len(keyframes) - 1, "box", config.box_grid, (r.x0, r.y0, r.x1, r.y1), CROP) for r in regions]
    processor = model.vision.processor
    crops = processor.normalize(torch.from_numpy(crop_pixels(processor, keyframes, runs, config)))
    return model.region_tags(model.crop_grid(crops))


def question_pick(model, keyframes, candidates: Sequence[Region], config: KeyframeConfig, question: str
                  ) -> list[Region]:
    """The trigger keyframe's regions when a question picks among its proposals ``candidates`` (the first
    ``config.question_candidates``, best first): each read by the crop reader, the one whose tag shares the most words
    with the question laid out last (``region_order.asked_last``), ``config.max_regions`` in all."""
    tags = trigger_tags(model, keyframes, candidates, config)
    return asked_last(candidates, matched_index(question, tags), config.max_regions)


def propose_regions(proposer: RegionProposer, keyframes, grids, config: KeyframeConfig,
                    trigger_regions: int = 0) -> list[list[Region]]:
    """The proposer's regions on the keyframes ``config.regions_on`` names, at most ``max_regions`` each, the trigger
    keyframe (the last) up to ``trigger_regions`` where that is more (``keyframes.question_candidates``): one proposal
    pass, its best-first lists cut."""
    if config.regions_on == "none" or config.max_regions == 0:
        return [[] for _ in keyframes]
    most = max(config.max_regions, trigger_regions)
    found = proposer.propose(list(keyframes), grids, most)
    if config.regions_on == "trigger":
        found = [[] for _ in keyframes[:-1]] + [found[-1]]
    return [list(r)[: config.max_regions] for r in found[:-1]] + [list(found[-1])[:most]]
