"""Frame-encoder pretraining: the towers, connectors and router learn to see before the stream is trained.

LION-FS fine-tunes on top of pretrained CLIP/SigLIP towers. Ours are random, and with the
narration loss alone the round-2 models named the wrong colour or verb in most narrations they got
wrong (LM-Correctness 0.58, docs/RESULTS.md). This stage trains ``embed_frames`` (both towers,
both connectors, the aggregation router) with heads that name what each LLM frame shows: per cell
of the token grid, the object there and any hand; per frame, the action and the objects involved
(``lionfs_ros.data.synth.frame_labels``). The heads are thrown away; the stream training starts
from the encoder they shaped.

Under ``torchrun`` / ``accelerate launch`` every process trains this stage on its share of each
batch's clips (``clips_per_batch`` per process, like ``per_device_train_batch_size``), their gradients
averaged (``train.distributed``); the main process measures the held-out clips and saves. The loss
(and the held-out accuracies) go to TensorBoard under ``frame_pretraining/``.
Output (``OUT/frame_pretraining``): ``frame_encoder.safetensors`` (the trained modules' weights,
reloaded instead of retrained when a run is restarted), ``summary.json`` (losses and held-out
accuracies before and after) and ``losses.json`` (every step's loss).
"""
from __future__ import annotations

import json
import math
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from lionfs_ros.data.frame_cache import FrameCache, load_frames
from lionfs_ros.data.frame_sources import SynthFrames
from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.data.stream_examples import StreamExample
from lionfs_ros.data.synth import load_catalogue, load_episode, read_manifest
from lionfs_ros.data.synth.frame_labels import SCENE, FrameAttributes, cell_labels, frame_labels, replay_settings
from lionfs_ros.model.checkpoint import read_safetensors

from .config import FramePretrainingSection, TrainConfigError
from .distributed import (average_gradients, check_in_sync, from_main_process, map_sharded, mean_over_processes,
                          rank_and_world)
from .tensorboard import open_writer
from .trainer import warmup_cosine

PRETRAIN_DIR = "frame_pretraining"
WEIGHTS_NAME = "frame_encoder.safetensors"
SUMMARY_NAME = "summary.json"
LOSSES_NAME = "losses.json"  # the loss of every step (averaged over the processes)
TB_PREFIX = "frame_pretraining"
# What embed_frames is made of; the LLM and the token-dropping routers are not touched.
FRAME_ENCODER_MODULES = ("vision", "ego", "connector", "ego_connector", "aggregation_router")
SCENE_THRESHOLD = 0.5


class FrameAttributeHeads(nn.Module):
    """Frame attributes: one learned query each attends over the frame's tokens, a linear layer names the class.
    Cell attributes: a linear layer on each grid token names what is in that cell."""

    def __init__(self, width: int, attributes: FrameAttributes, grid: int):
        super().__init__()
        self.names = attributes.names + (SCENE,)
        self.cells = grid * grid
        self.norm = nn.LayerNorm(width)
        self.queries = nn.Parameter(torch.randn(len(self.names), width) * width ** -0.5)
        sizes = {name: len(classes) for name, classes in attributes.classes.items()} | {SCENE: len(attributes.scene)}
        self.classifiers = nn.ModuleDict({name: nn.Linear(width, sizes[name]) for name in self.names})
        self.cell_classifiers = nn.ModuleDict({name: nn.Linear(width, len(classes))
                                               for name, classes in attributes.cells.items()})

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.norm(tokens.float())  # [T, n, d]
        scores = torch.einsum("tnd,ad->tan", x, self.queries) / math.sqrt(x.shape[-1])  # [T, A, n]
        pooled = scores.softmax(dim=-1) @ x  # [T, A, d]
        out = {name: self.classifiers[name](pooled[:, i]) for i, name in enumerate(self.names)}
        grid_tokens = x[:, -self.cells:]  # [T, g*g, d]: the pooled grid follows any global token
        out.update({name: head(grid_tokens) for name, head in self.cell_classifiers.items()})  # [T, g*g, C]
        return out


def attribute_loss(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over attributes: cross-entropy for the single-label ones (per cell for the grid's), BCE for the scene."""
    total = F.binary_cross_entropy_with_logits(logits[SCENE], labels[SCENE])
    for name, values in logits.items():
        if name != SCENE:
            total = total + F.cross_entropy(values.flatten(0, -2), labels[name].flatten())
    return total


def _episode_labels(job: tuple) -> dict[str, np.ndarray]:
    example, attributes, grid, settings = job
    source = example.source
    episode = load_episode(source.root, source.episode_id, frames=False)
    count = example.num_frames
    labels = frame_labels(episode, np.arange(count) / example.frame_fps, example.frame_fps, attributes)
    labels.update(cell_labels(episode, settings, source.native_frames(count), grid, attributes))
    compact = {name: values.astype(np.uint8) for name, values in labels.items() if name != SCENE}
    compact[SCENE] = labels[SCENE][0]  # the same for every frame of an episode
    return compact


def label_examples(examples: list[StreamExample], attributes: FrameAttributes, grid: int,
                   workers: int = 1) -> list[dict[str, np.ndarray]]:
    """Every example's frame and cell labels, computed once (replaying each plan takes a moment)."""
    settings = {root: replay_settings(read_manifest(root)) for root in {e.source.root for e in examples}}
    jobs = [(example, attributes, grid, settings[example.source.root]) for example in examples]
    progress = dict(total=len(jobs), desc="frame labels", unit="clip")
    if workers <= 1:
        return [_episode_labels(job) for job in tqdm(jobs, **progress)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap(_episode_labels, jobs, chunksize=8), **progress))


class FrameLabelDataset(Dataset):
    """``frames_per_clip`` random LLM frames of one clip, with their ego frames and labels (None: every frame)."""

    def __init__(self, examples: list[StreamExample], labels: list[dict[str, np.ndarray]], recipe: FrameRecipe,
                 frames_per_clip: int | None, cache: FrameCache | None = None):
        self.examples, self.labels, self.recipe = examples, labels, recipe
        self.frames_per_clip, self.cache = frames_per_clip, cache

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        frames = load_frames(example, self.recipe, self.cache)
        count = example.num_frames
        picked = torch.arange(count) if self.frames_per_clip is None else torch.randperm(count)[: self.frames_per_clip]
        picked = picked.sort().values.numpy()
        labels = {name: torch.from_numpy(values[picked].astype(np.int64))
                  for name, values in self.labels[index].items() if name != SCENE}
        labels[SCENE] = torch.from_numpy(self.labels[index][SCENE]).expand(len(picked), -1).clone()
        item = {"general": torch.from_numpy(np.ascontiguousarray(frames.general[picked])), "labels": labels}
        if frames.ego is not None:
            r = self.recipe.ego_per_frame
            ego = frames.ego.reshape(count, r, *frames.ego.shape[1:])[picked]
            item["ego"] = torch.from_numpy(np.ascontiguousarray(ego.reshape(-1, *frames.ego.shape[1:])))
        return item


def collate_frames(items: list[dict]) -> dict:
    batch = {"general": torch.cat([item["general"] for item in items]),
             "labels": {name: torch.cat([item["labels"][name] for item in items]) for name in items[0]["labels"]}}
    if "ego" in items[0]:
        batch["ego"] = torch.cat([item["ego"] for item in items])
    return batch


@dataclass
class _Step:
    model: nn.Module
    heads: FrameAttributeHeads
    recipe: FrameRecipe
    device: torch.device
    bf16: bool

    def logits(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        general = self.recipe.general.normalize(batch["general"].to(self.device, non_blocking=True))
        ego = batch.get("ego")
        if ego is not None:
            ego = self.recipe.ego.normalize(ego.to(self.device, non_blocking=True))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            tokens = self.model.embed_frames(general, ego)  # [T, n, d]
        labels = {name: values.to(self.device) for name, values in batch["labels"].items()}
        return self.heads(tokens), labels


def frame_encoder_parameters(model) -> dict[str, torch.Tensor]:
    """The trainable tensors of the frame encoder, by their names in the model's state dict."""
    return {name: p for name, p in model.named_parameters()
            if name.split(".", 1)[0] in FRAME_ENCODER_MODULES and p.requires_grad}


def freeze_towers(model) -> None:
    """Stop training both towers (recorded in the saved config as ``trainable: false``)."""
    for encoder in (model.vision, model.ego):
        if encoder is not None:
            encoder.cfg.trainable = False
            encoder.tower.requires_grad_(False)


def check_pretrainable(examples: list[StreamExample], model) -> None:
    if not all(isinstance(e.source, SynthFrames) for e in examples):
        raise TrainConfigError("frame_pretraining reads the synthetic world's labels: data.format must be 'synth'")
    if not frame_encoder_parameters(model):
        raise TrainConfigError("frame_pretraining: the frame encoder has nothing trainable (frozen towers)")


@torch.no_grad()
def held_out_accuracy(step: _Step, loader: DataLoader) -> dict[str, float]:
    """Accuracy per attribute over every frame, and over the frames that show an action; the scene's F1."""
    step.model.eval()
    step.heads.eval()
    hits: dict[str, list[float]] = {}
    scene = torch.zeros(3)  # true positives, predicted, actual
    for batch in loader:
        logits, labels = step.logits(batch)
        acting = labels["verb"] != 0
        for name, values in logits.items():
            if values.dim() == 3:  # per cell: over the cells that hold something
                right = (values.argmax(-1) == labels[name]).float()
                hits.setdefault(name, []).extend(right[labels[name] != 0].tolist())
                continue
            if name == SCENE:
                predicted = values.sigmoid() > SCENE_THRESHOLD
                actual = labels[SCENE] > SCENE_THRESHOLD
                scene += torch.tensor([(predicted & actual).sum().item(), predicted.sum().item(), actual.sum().item()])
                continue
            right = (values.argmax(-1) == labels[name]).float()
            hits.setdefault(name, []).extend(right.tolist())
            hits.setdefault(f"{name}_acting", []).extend(right[acting].tolist())
    step.model.train()
    step.heads.train()
    report = {name: round(float(np.mean(v)), 4) for name, v in hits.items() if v}
    report["scene_f1"] = round(float(2 * scene[0] / max(float(scene[1] + scene[2]), 1.0)), 4)
    return report


def _batches(loader: DataLoader):
    epoch = 0
    while True:
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)  # another shuffle each pass, the same on every process
        yield from loader
        epoch += 1


def stop_after(minutes: float | None):
    """``out_of_time(started)``: whether the budget is spent, the same answer on every process (the main
    process's clock decides, so no process leaves the step loop alone)."""
    def out_of_time(started: float) -> bool:
        if minutes is None:
            return False
        return from_main_process(time.monotonic() - started > minutes * 60.0)
    return out_of_time


def _log_held_out(writer, report: dict[str, float], step: int) -> None:
    if writer is not None:
        for name, value in report.items():
            writer.add_scalar(f"{TB_PREFIX}/held_out/{name}", value, step)


def load_pretrained_frame_encoder(model, path: Path) -> None:
    weights = read_safetensors(path)
    expected = frame_encoder_parameters(model)
    missing = sorted(set(expected) - set(weights))
    unknown = sorted(set(weights) - set(dict(model.named_parameters())))
    if missing or unknown:
        raise TrainConfigError(f"{path} does not fit this model: missing {missing[:5]}, unknown {unknown[:5]}")
    with torch.no_grad():
        for name, param in expected.items():
            if weights[name].shape != param.shape:
                raise TrainConfigError(f"{path}: {name} is {list(weights[name].shape)}, the model's {list(param.shape)}")
            param.copy_(weights[name])


def pretrain_frame_encoder(model, examples: list[StreamExample], recipe: FrameRecipe, section: FramePretrainingSection,
                           out: Path, device: torch.device, bf16: bool, cache: FrameCache | None = None,
                           seed: int = 0, log_dir: Path | None = None) -> dict:
    """Train (or, if ``out`` already holds the result, reload) the frame encoder; returns the summary.
    Every process of a distributed run calls this; ``log_dir``: TensorBoard logs (main process)."""
    weights_path, summary_path = out / WEIGHTS_NAME, out / SUMMARY_NAME
    if weights_path.is_file() and summary_path.is_file():
        load_pretrained_frame_encoder(model, weights_path)
        return json.loads(summary_path.read_text())
    check_pretrainable(examples, model)
    rank, world = rank_and_world()
    main = rank == 0
    attributes = FrameAttributes.from_catalogue(load_catalogue())
    holdout = min(section.holdout_clips, len(examples) // 2)
    grid = model.config.vision.pool_grid
    labels = map_sharded(examples, lambda part: label_examples(part, attributes, grid, section.num_workers))
    cut = len(examples) - holdout
    workers = section.num_workers
    train_set = FrameLabelDataset(examples[:cut], labels[:cut], recipe, section.frames_per_clip, cache)
    held = FrameLabelDataset(examples[cut:], labels[cut:], recipe, None, cache)
    drop_last = len(train_set) > section.clips_per_batch * world
    if world > 1:
        order = dict(sampler=DistributedSampler(train_set, world, rank, shuffle=True, seed=seed, drop_last=drop_last))
    else:
        order = dict(shuffle=True, generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(train_set, batch_size=section.clips_per_batch, drop_last=drop_last, collate_fn=collate_frames,
                        num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda", **order)
    held_loader = DataLoader(held, batch_size=section.clips_per_batch, collate_fn=collate_frames, num_workers=workers)
    torch.manual_seed(seed)  # the heads start the same on every process
    model.to(device).train()
    heads = FrameAttributeHeads(model.hidden_size, attributes, grid).to(device)
    step = _Step(model, heads, recipe, device, bf16)
    params = list(frame_encoder_parameters(model).values()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=section.learning_rate, weight_decay=section.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, section.steps, section.warmup_steps))
    writer = open_writer(log_dir, TB_PREFIX) if main and log_dir is not None else None
    before = held_out_accuracy(step, held_loader) if held and main else {}
    _log_held_out(writer, before, 0)
    losses, started = [], time.monotonic()
    out_of_time = stop_after(section.max_minutes)
    batches = _batches(loader)
    progress = tqdm(range(section.steps), desc="frame pretraining", unit="step", disable=not main)
    for index in progress:
        logits, labels = step.logits(next(batches))
        loss = attribute_loss(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params)
        torch.nn.utils.clip_grad_norm_(params, section.max_grad_norm)
        optimizer.step()
        scheduler.step()
        losses.append(mean_over_processes(loss))
        if writer is not None:
            writer.add_scalar(f"{TB_PREFIX}/loss", losses[-1], index + 1)
            writer.add_scalar(f"{TB_PREFIX}/learning_rate", scheduler.get_last_lr()[0], index + 1)
        if (index + 1) % section.log_window == 0:
            progress.set_postfix(loss=f"{np.mean(losses[-section.log_window:]):.3f}")
        if section.eval_steps and (index + 1) % section.eval_steps == 0 and index + 1 < section.steps and held and main:
            _log_held_out(writer, held_out_accuracy(step, held_loader), index + 1)
        if out_of_time(started):
            break
    runtime = time.monotonic() - started
    check_in_sync(params, "frame pretraining")
    summary = None
    if main:
        after = held_out_accuracy(step, held_loader) if held else {}
        _log_held_out(writer, after, len(losses))
        window = max(1, min(section.log_window, len(losses)))
        summary = {
            "steps": len(losses), "runtime_s": round(runtime, 1), "device": str(device), "bf16": bf16,
            "world_size": world, "clips_per_step": section.clips_per_batch * world,
            "train_clips": len(train_set), "held_out_clips": len(held),
            "first_loss": round(float(np.mean(losses[:window])), 4),
            "last_loss": round(float(np.mean(losses[-window:])), 4),
            "held_out_before": before, "held_out_after": after,
            "parameters": sum(p.numel() for p in frame_encoder_parameters(model).values()),
        }
        out.mkdir(parents=True, exist_ok=True)
        save_file({name: p.detach().float().cpu().contiguous() for name, p in frame_encoder_parameters(model).items()},
                  str(weights_path))
        (out / LOSSES_NAME).write_text(json.dumps([round(v, 5) for v in losses]) + "\n")
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        if writer is not None:
            writer.close()
    summary = from_main_process(summary)  # the others wait here for the saved result
    model.to("cpu")
    return summary
