"""The fork stage (issue 15, round 12): the LLM alone trained on the slow path's forks, vision features cached.

The stream stage spends a small part of each batch on the forks that ask a printed label; its 4-layer LLM does
not learn to copy the region tag into the answer. This stage gives the copy its own budget: the training
samples are built once as ``lionfs train`` builds them (``ThinkingSampler``, the crop reader's tags inserted by
``train.region_tags``), every frozen part is run once (the frames' fused tokens, the templates' pooled keyframe
and crop features, both through their connectors), and then only the LLM's weights learn, on the forks' answers
(``main_weight`` > 0 keeps the main context's narration / stream targets in the loss at that weight). Each
sample is cut after its last fork's last token when the main context is not learned (nothing after it is).

``relabel`` (``fork_stage.relabel``, the chance per sample): a counterfactual copy of a sample, each weighted fork
whose answer is a printed label its tags carry has that label swapped for another, in the tags and in the answer
alike, so that the episode's pixels and the model's memory of it no longer predict the answer: only the tag does.

``cache_samples`` -> ``CachedSample`` list; ``train_forks`` steps an optimizer over them; ``fork_loss`` is
``LionFSModel.forward``'s loss on a cached sample (its frozen parts passed in, computed already);
``run_fork_stage`` is the stage as ``lionfs train`` runs it after the stream stage.
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from lionfs_ros.model.crop_reader import NO_LABEL
from lionfs_ros.model.keyframe_tokens import pool_runs

from .region_tags import SLOTS_KEY, insert_region_tags
from .trainer import prepare_model_inputs, warmup_cosine

FORK_DIR, SUMMARY = "fork_stage", "summary.json"


@dataclass
class CachedSample:
    """One training sequence ``[1, L]`` with its frozen parts computed: ``frame_embeds [T * n, d]`` (the fused frame
    tokens, frames in reading order), ``template_embeds [P, d]`` (the templates' pooled features through the
    connector)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    branch_ids: torch.Tensor
    template_mask: torch.Tensor
    label_weights: torch.Tensor
    frame_embeds: torch.Tensor
    template_embeds: torch.Tensor

    def weighted_forks(self) -> int:
        """How many forks have a target weighted above 1 (the detail answers)."""
        learned = (self.labels != -100) & (self.label_weights > 1) & (self.branch_ids > 0)
        return len(set(self.branch_ids[learned].tolist()))


def cached_sample(model, inputs: dict, main_weight: float) -> CachedSample | None:
    """A collated one-row batch (``prepare_model_inputs``'d, tags inserted) -> its cached sample. ``main_weight``
    scales the main context's targets (0: not learned, and the sequence is cut after the last fork; None for a
    sample without forks: nothing to learn)."""
    length = int(inputs["attention_mask"][0].sum())
    columns = {name: inputs[name][0, :length].clone() for name in
               ("input_ids", "labels", "attention_mask", "position_ids", "branch_ids", "template_mask")}
    main = columns["branch_ids"] == 0
    if main_weight == 0 and bool(main.all()):
        return None
    with torch.no_grad():
        frame_embeds = model.embed_frames(inputs["general"], inputs.get("ego"))  # [T, n, d]
        frame_embeds = frame_embeds.reshape(-1, frame_embeds.shape[-1])  # [T * n, d]
        template_embeds = frame_embeds.new_zeros((0, frame_embeds.shape[-1]))
        if inputs.get("keyframe_general") is not None:
            grids = model.patch_grid(inputs["keyframe_general"])  # [K, h, w, C]
            crop_grids = inputs.get("keyframe_crop_grids")  # [N, h, w, C]
            if crop_grids is None and inputs.get("keyframe_crops") is not None:
                crop_grids = model.crop_grid(inputs["keyframe_crops"])
            template_embeds = model.project_general(pool_runs(grids, inputs["keyframe_runs"], crop_grids))  # [P, d]
    weights = inputs.get("label_weights")
    weights = torch.ones(length, device=main.device) if weights is None else weights[0, :length].clone().float()
    if main_weight == 0:
        columns["labels"][main] = model.config.stream.ignore_index
        end = int((~main).nonzero().max()) + 1  # nothing after the last fork's last token is learned
        placeholder = model.token_ids.placeholder
        kept = int(((columns["input_ids"][:end] == placeholder) & ~columns["template_mask"][:end]).sum())
        frame_embeds = frame_embeds[:kept]
        columns = {name: column[:end] for name, column in columns.items()}
        weights = weights[:end]
    else:
        weights[main] *= main_weight
    return CachedSample(**{k: v[None] for k, v in columns.items()}, label_weights=weights[None],
                        frame_embeds=frame_embeds.detach(), template_embeds=template_embeds.detach())


def cache_samples(model, dataset, collate, recipe, main_weight: float = 0.0, workers: int = 0,
                  bf16: bool = False) -> list[CachedSample]:
    """Every sample of ``dataset`` (a ``StreamDataset`` with a ``ThinkingSampler``) built (by ``workers`` loader
    processes), tagged and cached on the model's device (``bf16``: the frozen parts under autocast on CUDA); with
    ``main_weight`` 0 the samples without a fork are left out."""
    model.eval()
    loader = DataLoader(dataset, batch_size=1, collate_fn=collate, num_workers=workers)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and model.device.type == "cuda")
    out = []
    for batch in loader:
        inputs = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        inputs = prepare_model_inputs(inputs, recipe)
        with torch.no_grad(), autocast:
            inputs = insert_region_tags(model, inputs) if SLOTS_KEY in inputs else inputs
            sample = cached_sample(model, inputs, main_weight)
        if sample is not None:
            out.append(dataclasses.replace(sample, frame_embeds=sample.frame_embeds.float(),
                                           template_embeds=sample.template_embeds.float()))
    if not out:
        raise ValueError("no training sample has a fork: the fork stage has nothing to learn")
    return out


def run_fork_stage(model, dataset, collate, recipe, section, out_dir: Path, bf16: bool, seed: int) -> dict:
    """``fork_stage`` (a ``ForkStageSection``) on the model where it is: the first ``section.episodes`` samples of
    ``dataset`` cached, the LLM trained; writes and returns ``out_dir/summary.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    subset = Subset(dataset, range(min(section.episodes, len(dataset))))
    samples = cache_samples(model, subset, collate, recipe, section.main_weight, section.workers, bf16)
    cached_s = time.monotonic() - start
    history = train_forks(model, samples, section.steps, section.learning_rate, section.batch_size,
                          section.warmup_steps, seed, log=lambda h: print(f"fork_stage: {h}", flush=True), bf16=bf16,
                          max_minutes=section.max_minutes, relabel_p=section.relabel)
    summary = {"episodes": len(samples), "tokens": sum(s.input_ids.shape[1] for s in samples),
               "weighted_forks": sum(s.weighted_forks() for s in samples), "cache_s": round(cached_s, 1),
               "steps": history[-1]["step"], "runtime_s": round(time.monotonic() - start - cached_s, 1),
               "first_loss": history[0]["loss"], "last_loss": history[-1]["loss"], "history": history}
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def fork_loss(model, sample: CachedSample) -> torch.Tensor:
    """The model's own training loss (``LionFSModel.forward``) on one cached sample."""
    frame_embeds = sample.frame_embeds.view(-1, model.tokens_per_frame, sample.frame_embeds.shape[-1])
    return model(sample.input_ids, labels=sample.labels, attention_mask=sample.attention_mask,
                 frame_embeds=frame_embeds, template_mask=sample.template_mask, template_embeds=sample.template_embeds,
                 position_ids=sample.position_ids, branch_ids=sample.branch_ids,
                 label_weights=sample.label_weights).loss


def label_choices(model) -> dict[int, list[tuple[int, ...]]]:
    """The crop reader's printed labels as the tags and answers tokenize them (after a space), by token count."""
    out: dict[int, list[tuple[int, ...]]] = {}
    for label in model.crop_reader.classes["label"]:
        if label != NO_LABEL:
            ids = tuple(model.formatter.text_ids(" " + label))
            out.setdefault(len(ids), []).append(ids)
    return out


def relabel(sample: CachedSample, choices: dict[int, list[tuple[int, ...]]], eos: int, ignore: int,
            rng: random.Random) -> CachedSample:
    """A counterfactual copy of ``sample``: on each weighted fork whose answer is a printed label that the fork's
    tags carry, that label is swapped, in the tags and in the answer, for another of as many tokens (drawn by
    ``rng``). Only the copy can then predict the answer: the box tokens and the episode no longer tell it."""
    ids, labels = sample.input_ids[0].clone(), sample.labels[0].clone()
    learned = (labels != ignore) & (sample.label_weights[0] > 1)
    for branch in set(sample.branch_ids[0][learned].tolist()):
        answer_at = (learned & (sample.branch_ids[0] == branch)).nonzero().flatten()  # [a] contiguous
        answer = tuple(t for t in labels[answer_at].tolist() if t != eos)
        if answer not in choices.get(len(answer), []):
            continue
        fork = (sample.branch_ids[0] == branch).nonzero().flatten()
        before = fork[fork <= answer_at[0]]  # the template, its tags and the question
        hits = [int(before[i]) for i in range(len(before) - len(answer) + 1)
                if tuple(ids[before[i:i + len(answer)]].tolist()) == answer]
        if not hits:
            continue
        new = torch.tensor(rng.choice(choices[len(answer)]), device=ids.device)
        for start in hits:
            ids[start:start + len(answer)] = new
        labels[answer_at[:len(answer)]] = new
        ids[answer_at[:len(answer)] + 1] = new
    return dataclasses.replace(sample, input_ids=ids[None], labels=labels[None])


def llm_only(model) -> list[torch.nn.Parameter]:
    """Freeze every part but the LLM; its parameters."""
    model.requires_grad_(False)
    model.llm.requires_grad_(True)
    return [p for p in model.llm.parameters() if p.requires_grad]


def train_forks(model, samples: list[CachedSample], steps: int, learning_rate: float, batch: int = 1,
                warmup: int = 0, seed: int = 0, log_every: int = 20, log=print, bf16: bool = False,
                max_minutes: float | None = None, relabel_p: float = 0.0) -> list[dict]:
    """``steps`` AdamW steps of ``batch`` cached samples each (gradient accumulation; cosine to 0 after a linear
    warmup) on the LLM only (``bf16``: autocast on CUDA; ``max_minutes``: stop early). Returns the log: mean loss
    per ``log_every`` steps (and the last step) with the seconds so far. ``relabel_p``: the chance that a sample is
    seen as its counterfactual copy (``relabel``) instead."""
    params = llm_only(model)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and model.device.type == "cuda")
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, steps, warmup))
    order, rng, history, running, start = [], random.Random(seed), [], 0.0, time.monotonic()
    choices = label_choices(model) if relabel_p > 0 else {}
    eos, ignore = model.tokenizer.eos_token_id, model.config.stream.ignore_index
    model.train()
    for step in range(1, steps + 1):
        for _ in range(batch):
            if not order:
                order = rng.sample(range(len(samples)), len(samples))
            sample = samples[order.pop()]
            if relabel_p > 0 and rng.random() < relabel_p:
                sample = relabel(sample, choices, eos, ignore, rng)
            with autocast:
                loss = fork_loss(model, sample) / batch
            loss.backward()
            running += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        out_of_time = max_minutes is not None and time.monotonic() - start > 60.0 * max_minutes
        if step % log_every == 0 or step == steps or out_of_time:
            since = step - (history[-1]["step"] if history else 0)
            history.append({"step": step, "loss": round(running / since, 5), "seconds": round(time.monotonic() - start, 1)})
            log(history[-1])
            running = 0.0
        if out_of_time:
            break
    model.eval()
    return history

