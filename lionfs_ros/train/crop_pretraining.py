"""Crop-tower pretraining: the slow path's crop tower learns to read objects before the stream is trained.

The slow path re-encodes a crop around each proposed region (``keyframes.box_source: crop``) and hands
the LLM its patch grid pooled to ``box_grid x box_grid`` box tokens. Read by the frozen general tower,
those tokens hold an object's printed label for a linear reader 0.58 of the time at best
(``scripts/crop_reading_probe.py``, docs/RESULTS.md), under what detail questions need. This stage gives
the model a crop tower of its own (``LionFSModel.add_crop_tower``: a copy of the general tower, which the
fast path keeps as it is) and trains it on the task itself: for every object standing on the table in
every ``frame_step``-th native frame of the training episodes, the crop the slow path would cut around it
(its box moved by up to ``jitter`` of its size and scaled by up to ``scale``, as a proposer's region is not
centred on it) -> its printed label (``none`` if it has none), shape and colour (and with ``part_colour``
its part's colour, attribute ``patch``: a bottle's cap, a jar's lid, ``none`` for objects without a part),
each named by a linear head on the crop tower's patch grid pooled to ``box_grid x box_grid`` (the tokens the
LLM will read), ``model.crop_reader.CropReader``. The heads are thrown away, unless ``keep_reader``
(``data.keyframes.region_tags``): then the model keeps them, frozen, as its crop reader, whose reading the
thinking template writes after each region's box tokens. The stream training (stage 2) reads crops with the tower this stage leaves
(frozen unless ``train_in_stream``).

``crops: proposer`` cuts the training crops where the slow thinker's would be: on each such frame, the
regions its proposer finds (``thinking_template.propose_regions``, the frame one LLM frame back as the
previous keyframe for the motion term; ``thinking.regions.features: pixels`` only), each labelled with
the object it holds (``data.synth_objects.object_in_region``), or ``none`` for every attribute
when it holds none (the reader then writes `` nothing``); ``jitter`` / ``scale`` are not used there.
``train_tower: false`` trains the heads alone on the crop tower as it is (a new reader for a trained one).

One process: under ``torchrun`` this stage is refused (train it in a single-process run and fine-tune
from its model with ``model.init_from``). Output (``OUT/crop_pretraining``): ``summary.json`` (steps,
losses, held-out accuracies per attribute before and after, on crops centred on their objects, from the
last ``holdout_episodes`` episodes, kept out of training).
"""
from __future__ import annotations

import json
import math
import multiprocessing
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from lionfs_ros.data.stream_examples import StreamExample
from lionfs_ros.data.synth import load_episode
from lionfs_ros.data.synth.frame_labels import NONE
from lionfs_ros.data.synth_objects import StandingObject, object_in_region, standing_objects
from lionfs_ros.model.configuration_lionfs import KeyframeConfig, RegionConfig
from lionfs_ros.model.crop_reader import ATTRIBUTES, TAGGED, CropReader
from lionfs_ros.model.image_processing import ImageProcessor
from lionfs_ros.model.keyframe_tokens import crop_box
from lionfs_ros.model.regions import make_proposer
from lionfs_ros.model.template_regions import propose_regions

from .config import CropPretrainingSection, TrainConfigError
from .distributed import rank_and_world

CROP_DIR = "crop_pretraining"
SUMMARY_NAME = "summary.json"
EVAL_BATCH = 256


@dataclass(frozen=True)
class CropObject:
    """One object on one frame: the frame (index into the frames it was found with), its normalized box
    (x0, y0, x1, y1) and its attribute values (``patch``: its part's colour; ``part``: that part's noun, not
    an attribute: the tags' word for it)."""

    frame: int
    box: tuple[float, float, float, float]
    label: str
    shape: str
    colour: str
    patch: str = NONE
    part: str = NONE


def crop_object(box: tuple[float, float, float, float], held: StandingObject | None) -> CropObject:
    """A crop at ``box`` (on frame 0) named by the standing object it shows; ``none`` throughout for no object."""
    if held is None:
        return CropObject(0, box, NONE, NONE, NONE)
    return CropObject(0, box, held.label, held.shape, held.colour, held.patch, held.part)


def episode_objects(root: str, episode_id: str, frame_step: int, labelled_only: bool = False):
    """Per ``frame_step``-th native frame of an episode: ``(native frame index, rgb [H, W, 3] uint8,
    [CropObject with frame=0])``: every object standing on the table away from the frame's edge
    (``labelled_only``: only those with a printed label)."""
    episode = load_episode(root, episode_id)
    frames = range(0, len(episode.frames), frame_step)
    for frame, found in zip(frames, standing_objects(root, episode, frames)):
        kept = [o for o in found if not (labelled_only and o.label == NONE)]
        yield frame, episode.frames[frame], [crop_object(o.box, o) for o in kept]


@dataclass(frozen=True)
class ProposerCrops:
    """``crops: proposer``: the slow thinker's proposer settings, its cells (the general tower's patch grid
    side) and the native frames back to the previous keyframe (one LLM frame)."""

    keyframes: KeyframeConfig
    regions: RegionConfig
    grid_side: int
    motion_step: int


def proposed_objects(root: str, episode_id: str, frame_step: int, spec: ProposerCrops):
    """As ``episode_objects``, with the proposer's regions on each frame for boxes: each region's box and the
    attributes of the object it holds (all ``none`` if it holds none)."""
    episode = load_episode(root, episode_id)
    proposer = make_proposer(spec.regions)
    frames = range(0, len(episode.frames), frame_step)
    for frame, standing in zip(frames, standing_objects(root, episode, frames)):
        keyframes = [episode.frames[frame - spec.motion_step]] if frame >= spec.motion_step else []
        keyframes.append(episode.frames[frame])
        cells = torch.zeros(len(keyframes), spec.grid_side, spec.grid_side, 0)  # pixels: only the shape is read
        found = []
        for region in propose_regions(proposer, keyframes, cells, spec.keyframes)[-1]:
            box = (region.x0, region.y0, region.x1, region.y1)
            found.append(crop_object(box, object_in_region(standing, box)))
        yield frame, episode.frames[frame], found


def _one_thread() -> None:
    """A collecting process's torch runs on one thread: the proposer's small torch ops, each spread over every
    core in each of ``workers`` processes, waited on each other (1.4 episodes/s with 12 workers on 16 cores)."""
    torch.set_num_threads(1)


def _collect(job: tuple) -> tuple[np.ndarray, list[CropObject]]:
    root, episode_id, frame_step, proposer = job
    frames, objects = [], []
    found_on = episode_objects(root, episode_id, frame_step) if proposer is None else \
        proposed_objects(root, episode_id, frame_step, proposer)
    for _, rgb, found in found_on:
        if found:
            objects += [replace(o, frame=len(frames)) for o in found]
            frames.append(rgb)
    return (np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)), objects


def collect_objects(episodes: list[tuple[str, str]], frame_step: int, workers: int,
                    proposer: ProposerCrops | None = None) -> tuple[np.ndarray, list[CropObject]]:
    """The frames (uint8 ``[F, H, W, 3]``) and objects of ``(root, episode_id)`` episodes, in order
    (``proposer``: the proposer's regions and the objects they hold)."""
    jobs = [(root, episode_id, frame_step, proposer) for root, episode_id in episodes]
    progress = dict(total=len(jobs), desc="crop objects", unit="episode")
    if workers <= 1:
        parts = [_collect(job) for job in tqdm(jobs, **progress)]
    else:
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_one_thread) as pool:
            parts = list(tqdm(pool.imap(_collect, jobs, chunksize=4), **progress))
    frames, objects = [], []
    for part_frames, part_objects in parts:
        offset = sum(len(f) for f in frames)
        objects += [replace(o, frame=o.frame + offset) for o in part_objects]
        frames.append(part_frames)
    kept = [f for f in frames if len(f)]
    return (np.concatenate(kept) if kept else np.zeros((0, 1, 1, 3), np.uint8)), objects


def jittered(box: tuple[float, float, float, float], draw: np.ndarray, jitter: float, scale: float):
    """``box`` moved by ``(2 * draw[:2] - 1) * jitter`` of its size and scaled by ``scale ** (2 * draw[2] - 1)``."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + (2 * draw[0] - 1) * jitter * w, (y0 + y1) / 2 + (2 * draw[1] - 1) * jitter * h
    s = scale ** (2 * draw[2] - 1)
    return (cx - s * w / 2, cy - s * h / 2, cx + s * w / 2, cy + s * h / 2)


class CropDataset(Dataset):
    """Crops (uint8 ``[S, S, 3]``, cut as the slow path cuts them) and their class indices; ``jitter``/``scale``
    move and scale each draw's box (torch's RNG: the DataLoader seeds each worker)."""

    def __init__(self, frames: np.ndarray, objects: list[CropObject], classes: dict[str, tuple[str, ...]],
                 processor: ImageProcessor, margin: float, minimum: float, jitter: float = 0.0, scale: float = 1.0):
        self.frames, self.objects, self.processor = frames, objects, processor
        self.margin, self.minimum, self.jitter, self.scale = margin, minimum, jitter, scale
        index = {name: {value: i for i, value in enumerate(values)} for name, values in classes.items()}
        self.targets = {name: torch.tensor([index[name][getattr(o, name)] for o in objects]) for name in classes}

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, i: int) -> dict:
        obj = self.objects[i]
        box = jittered(obj.box, torch.rand(3).numpy(), self.jitter, self.scale) if self.jitter or self.scale != 1.0 else obj.box
        crop = crop_box(self.frames[obj.frame], box, self.margin, self.minimum)
        pixels = torch.from_numpy(np.array(self.processor.resize_one(np.ascontiguousarray(crop))))
        return {"pixels": pixels, **{name: self.targets[name][i] for name in self.targets}}


def attribute_classes(objects: list[CropObject], names: tuple[str, ...] = TAGGED) -> dict[str, tuple[str, ...]]:
    """The classes of every attribute of ``names`` (``none`` first for labels and part colours, and for shapes
    and colours seen as ``none``: proposer crops that hold no object), from the objects seen."""
    classes = {}
    for name in names:
        seen = {getattr(o, name) for o in objects}
        values = sorted(seen - {NONE})
        classes[name] = (NONE, *values) if name in ("label", "patch") or NONE in seen else tuple(values)
    return classes


def part_nouns(objects: list[CropObject]) -> dict[str, str]:
    """Each shape's part noun (``{"bottle": "cap", "jar": "lid"}``), from the objects seen with a part."""
    return {o.shape: o.part for o in objects if o.part != NONE}


def _schedule(step: int, section: CropPretrainingSection) -> float:
    warm = min(1.0, (step + 1) / max(section.warmup_steps, 1))
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(step / section.steps, 1.0)))


@torch.no_grad()
def held_out_accuracy(encoder, heads: CropReader, dataset: CropDataset, device, autocast) -> dict[str, float]:
    """Accuracy per attribute on ``dataset``, and of the label on objects with a printed label only
    (``printed_label``) and of ``patch`` on objects with a part only (``part_colour``)."""
    right = {name: [] for name in heads.attributes}
    for batch in DataLoader(dataset, batch_size=EVAL_BATCH):
        with autocast():
            logits = heads(encoder.patch_grid(dataset.processor.normalize(batch["pixels"].to(device))))
        for name in heads.attributes:
            right[name].append(logits[name].argmax(1).cpu() == batch[name])
    out = {name: float(torch.cat(values).float().mean()) if values else float("nan") for name, values in right.items()}
    for name, attribute in (("printed_label", "label"), ("part_colour", "patch")):
        if attribute in right:  # class 0 is none
            some = dataset.targets[attribute] != 0
            out[name] = float(torch.cat(right[attribute])[some].float().mean()) if some.any() else float("nan")
    return {k: round(v, 4) for k, v in out.items()}


def pretrain_crop_tower(model, examples: list[StreamExample], processor: ImageProcessor, section: CropPretrainingSection,
                        box_grid: int, margin: float, minimum: float, out_dir: Path, device: torch.device,
                        bf16: bool, seed: int, keep_reader: bool = False,
                        proposer: tuple[KeyframeConfig, RegionConfig] | None = None) -> dict:
    """Stage 1b: add the model's crop tower (if it has none) and train it on crops -> label, shape, colour
    (and ``patch``: the part's colour, with ``section.part_colour``);
    ``keep_reader``: the trained heads become the model's crop reader (``LionFSModel.add_crop_reader``);
    ``proposer``: the slow thinker's keyframe and region settings (``crops: proposer``)."""
    if rank_and_world()[1] > 1:
        raise TrainConfigError("crop_pretraining runs in one process: train it without torchrun, then fine-tune "
                               "from its model (model.init_from)")
    torch.manual_seed(seed)
    episodes = list(dict.fromkeys((e.source.root, e.source.episode_id) for e in examples))[: section.episodes]
    if len(episodes) <= section.holdout_episodes:
        raise TrainConfigError(f"crop_pretraining: {len(episodes)} training episodes, not more than "
                               f"holdout_episodes={section.holdout_episodes}")
    cut = len(episodes) - section.holdout_episodes
    spec = proposer_crops(model, examples, section, proposer)
    train_frames, train_objects = collect_objects(episodes[:cut], section.frame_step, section.workers, spec)
    held_frames, held_objects = collect_objects(episodes[cut:], section.frame_step, section.workers, spec)
    names = ATTRIBUTES if section.part_colour else TAGGED
    classes = attribute_classes(train_objects + held_objects, names)
    jitter, scale = (section.jitter, section.scale) if spec is None else (0.0, 1.0)
    train_set = CropDataset(train_frames, train_objects, classes, processor, margin, minimum, jitter, scale)
    held_set = CropDataset(held_frames, held_objects, classes, processor, margin, minimum)
    encoder = model.add_crop_tower(trainable=section.train_tower)
    encoder.to(device)
    parts = part_nouns(train_objects + held_objects) if section.part_colour else None
    heads = CropReader(encoder.hidden_size, box_grid, classes, parts).to(device)
    groups = [{"params": heads.parameters(), "lr": section.head_learning_rate}]
    if section.train_tower:
        groups.insert(0, {"params": [p for p in encoder.parameters() if p.requires_grad], "lr": section.learning_rate})
    optimizer = torch.optim.AdamW(groups, weight_decay=section.weight_decay)
    base = [group["lr"] for group in optimizer.param_groups]
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 and device.type == "cuda" else nullcontext
    before = held_out_accuracy(encoder, heads, held_set, device, autocast)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_set, batch_size=section.batch_size, shuffle=True, drop_last=len(train_set) > section.batch_size,
                        num_workers=section.workers, generator=generator, persistent_workers=section.workers > 0)
    losses, step, started = [], 0, time.monotonic()
    encoder.train(section.train_tower)
    progress = tqdm(total=section.steps, desc="crop pretraining", unit="step")
    while step < section.steps:
        for batch in loader:
            if step >= section.steps or (section.max_minutes is not None and time.monotonic() - started > 60 * section.max_minutes):
                break
            for group, lr in zip(optimizer.param_groups, base):
                group["lr"] = lr * _schedule(step, section)
            with autocast(), torch.set_grad_enabled(section.train_tower):
                grid = encoder.patch_grid(processor.normalize(batch["pixels"].to(device)))
            with autocast():
                logits = heads(grid)
            loss = sum(F.cross_entropy(logits[name].float(), batch[name].to(device)) for name in names)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            progress.update(1)
        else:
            continue
        break
    progress.close()
    encoder.eval()
    summary = {"steps": step, "runtime_s": round(time.monotonic() - started, 1), "episodes": len(episodes),
               "holdout_episodes": section.holdout_episodes, "crops": section.crops, "train_tower": section.train_tower,
               "train_objects": len(train_objects),
               "held_out_objects": len(held_objects), "box_grid": box_grid, "classes": {k: len(v) for k, v in classes.items()},
               "first_loss": round(float(np.mean(losses[:10])), 4) if losses else None,
               "last_loss": round(float(np.mean(losses[-10:])), 4) if losses else None,
               "held_out_before": before, "held_out_after": held_out_accuracy(encoder, heads, held_set, device, autocast)}
    encoder.to("cpu")
    if keep_reader:
        model.add_crop_reader(heads.to("cpu"))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"crop pretraining: {step} steps, held-out printed label {before['printed_label']} -> "
          f"{summary['held_out_after']['printed_label']}", flush=True)
    return summary


def proposer_crops(model, examples: list[StreamExample], section: CropPretrainingSection,
                   proposer: tuple[KeyframeConfig, RegionConfig] | None) -> ProposerCrops | None:
    """``crops: proposer``'s settings (None for ``objects``), checked."""
    if section.crops != "proposer":
        return None
    if proposer is None:
        raise TrainConfigError("crop_pretraining.crops 'proposer' needs the slow thinker's keyframe and region settings")
    keyframes, regions = proposer
    if regions.features != "pixels" or keyframes.regions_on == "none" or keyframes.max_regions == 0:
        raise TrainConfigError("crop_pretraining.crops 'proposer' needs regions (keyframes.regions_on, max_regions > 0)"
                               " proposed on pixels (regions.features: pixels)")
    source = examples[0].source
    step = max(1, round(source.native_fps / source.frame_fps))
    return ProposerCrops(keyframes, regions, model.vision.grid_side, step)
