"""Training with the slow thinker's thinking template (``data.thinking``: answers | all).

What the engine does at a response (``engine.engine`` / ``slow_thinker``): it forks the main
context at the trigger, feeds the thinking template on the fork
(``model.thinking_template.build_thinking_inputs(context=None)``), writes the answer there, and commits only
``header + answer`` to the main context: the template never enters it. A thought assistant turn
of a plain sample (``StreamFormatter.encode``) becomes, in one sequence::

    ... context ... | fork k: [template][answer<eos>] | main: [header answer<eos>] ... later ...

- the fork holds the same template the engine feeds (``model.thinking_template.template_layout``: stream
  close + open, per keyframe grid runs and box runs, keyframe close, the assistant header), then
  the answer; its positions continue from the context, as on the engine's fork; with
  ``thinking.question: after`` an answer to a question has that question (the last user turn before
  it) restated between the keyframes and the header, as the engine's slow thinker restates its query;
- the main copy keeps the plain sample's ids and positions, so everything after it is the plain
  sample; ``branch_ids`` hide every fork from all tokens but its own (``model.decoder``), as the
  engine's main context never sees the template;
- labels: the answer is learned on the fork only (the last template token predicts the first
  answer token ... the last answer token predicts EOS); no template token is ever a target, and
  the main copy is not learned (the engine never generates on the main context). The trigger
  frame's decision keeps its plain target (the main context's next token);
- the template's placeholders are marked in ``template_mask`` (never visual, never dropped) and
  filled in the forward from the keyframes' patch grid (``LionFSModel.forward(keyframe_runs=)``);
  with ``keyframes.box_source: crop`` the box runs are filled from their crops
  (``model.thinking_template.crop_pixels``, cut in the data loader from the clip's general-size
  frames: the full resolution for the synthetic world, whose frames are the tower's size);
- ``keyframes.region_tags``: each region's tag is laid out empty here and its place kept (``tag_slots``); the main
  process reads the crops and inserts the tags before the forward (``train.region_tags``);
- ``detail_weight`` (``training.detail_answer_weight``, 1: off): the fork's answer targets of an answer
  whose question the synthetic world tags ``detail`` get this weight in the LM loss (``label_weights``;
  every other position 1), so the few printed-label answers count more than the narrations.
- ``extra_questions`` (``data.extra_detail_questions``, 0: off): that many more forks per sample, each right
  after a frame (the engine forks after a frame's decision), holding the template of that frame's keyframes,
  a detail question restated after it about the printed label of an object whose centre a proposed region
  of the trigger keyframe covers (``data.synth_objects``), and its answer (weighted as a detail answer).
  They exist on forks only: the main context, and so the plain sample's targets, are unchanged.

Keyframe choice. The engine picks, among the last ``history_frames`` decided frames up to the
trigger, the trigger plus novel frames by the cosine distance of their fast-path features (the
mean fused frame token). Training applies the same rule (``select_keyframe_indices``) to a cheap
pixel proxy instead: each frame as a ``novelty_cells x novelty_cells`` RGB thumbnail in [0, 1],
centred at mid-grey, so no model pass is needed in the data loader. The trigger is always chosen,
as in the engine; which other frames are added can differ (pixel vs. feature novelty, and
``min_novelty`` is read on the proxy's scale).
Regions (``keyframes.regions_on`` not ``none``): proposed by the model's proposer with the model's
``thinking.regions`` settings (the ones the engine uses) on the model's own patch grid of the
keyframes (``region_grids``, a no-grad tower pass in the main process).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from PIL import Image

from lionfs_ros.data.synth_objects import DETAIL, LabelledObject
from lionfs_ros.model.configuration_lionfs import ThinkingConfig
from lionfs_ros.model.keyframe_tokens import PoolRun
from lionfs_ros.model.region_order import asked_last
from lionfs_ros.model.regions import RegionProposer, make_proposer
from lionfs_ros.model.stream_format import StreamFormatter, StreamSample
from lionfs_ros.model.image_processing import ImageProcessor
from lionfs_ros.model.template_regions import crop_pixels, propose_regions
from lionfs_ros.model.thinking_template import ThinkingTemplate, select_keyframe_indices, tag_slots, template_layout

ANSWERS, ALL = "answers", "all"
MID_GREY = 0.5
UINT8_MAX = 255.0

RegionGrids = Callable[[np.ndarray], torch.Tensor]
"""uint8 keyframes ``[K, S, S, 3]`` -> the general tower's patch grids ``[K, h, w, C]`` (no grad)."""


@dataclass
class ThinkingSample:
    input_ids: torch.Tensor  # [L] long
    labels: torch.Tensor  # [L] long
    position_ids: torch.Tensor  # [L] long: rotary positions (forks continue from their context)
    branch_ids: torch.Tensor  # [L] long: 0 main context, k > 0 the k-th fork
    template_mask: torch.Tensor  # [L] bool: template placeholders
    keyframes: list[int] = field(default_factory=list)  # clip frame indices whose patch grids the runs pool
    runs: list[PoolRun] = field(default_factory=list)  # reading order; keyframe indexes ``keyframes``
    label_weights: torch.Tensor | None = None  # [L] float: per-target loss weights (None: all 1)
    tag_slots: list[int] = field(default_factory=list)  # region_tags: where each box run's tag goes (train.region_tags)


def novelty_features(frames: np.ndarray, cells: int) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> ``[T, cells*cells*3]``: box-averaged thumbnails, centred at mid-grey."""
    thumbs = [np.asarray(Image.fromarray(f).resize((cells, cells), Image.Resampling.BOX), np.float32) for f in frames]
    return torch.from_numpy(np.stack(thumbs) / UINT8_MAX - MID_GREY).flatten(1)


def thinks(message: dict, mode: str) -> bool:
    """Whether a message of a training conversation gets the template before it."""
    if message["role"] != "assistant" or not message.get("learn", False):
        return False
    return mode == ALL or (mode == ANSWERS and bool(message.get("answers_question", False)))


class ThinkingSampler:
    """``thinking``: the model's thinking config (``model.config.thinking``: mode, keyframes, regions);
    ``processor``: the general encoder's (crops are resized by it)."""

    def __init__(self, formatter: StreamFormatter, grid_side: int, thinking: ThinkingConfig,
                 novelty_cells: int, template: ThinkingTemplate | None = None,
                 proposer: RegionProposer | None = None, region_grids: RegionGrids | None = None,
                 processor: ImageProcessor | None = None, detail_weight: float = 1.0, extra_questions: int = 0):
        if detail_weight <= 0 or extra_questions < 0:
            raise ValueError(f"detail_weight must be > 0 and extra_questions >= 0, got {detail_weight}, {extra_questions}")
        self.extra_questions = extra_questions
        self.fmt, self.grid_side, self.processor = formatter, grid_side, processor
        self.detail_weight = detail_weight
        self.mode, self.cfg, self.restates = thinking.mode, thinking.keyframes, thinking.restates_question
        self.novelty_cells = novelty_cells
        self.template = template or ThinkingTemplate()
        self.proposer = proposer or make_proposer(thinking.regions)
        self.region_grids = region_grids
        self.wants_regions = self.cfg.regions_on != "none" and self.cfg.max_regions > 0
        if self.wants_regions and region_grids is None and thinking.regions.features == "pixels":
            self.region_grids = self._cell_shape  # the proposer reads colours, not tower features
        elif self.wants_regions and region_grids is None:
            raise ValueError("keyframes.regions_on needs region_grids (the model's patch grid of the keyframes)")
        if extra_questions and not self.wants_regions:
            raise ValueError("extra detail questions ask about objects that proposed regions cover: they need"
                             " keyframes.regions_on and max_regions > 0")

    @property
    def needs_objects(self) -> bool:
        """Whether ``sample`` needs the clip's labelled objects (extra detail questions, ``region_order``)."""
        return self.extra_questions > 0 or self.cfg.region_order == "question_last"

    def _cell_shape(self, keyframes: np.ndarray) -> torch.Tensor:
        """Stands for the patch grids when the proposer reads only their shape: ``[K, h, w, 0]``."""
        return torch.zeros(len(keyframes), self.grid_side, self.grid_side, 0)

    def crops(self, frames: np.ndarray, sample: "ThinkingSample") -> np.ndarray:
        """uint8 ``[N, S, S, 3]``: the sample's ``crop`` runs cut from ``frames`` (the clip) and resized."""
        keyframes = {slot: frames[index] for slot, index in enumerate(sample.keyframes)}
        if self.processor is None:
            raise ValueError("keyframes.box_source 'crop' needs the general encoder's image processor")
        return crop_pixels(self.processor, keyframes, sample.runs, self.cfg)

    def keyframes_at(self, frames: np.ndarray, trigger: int, features: torch.Tensor) -> list[int]:
        """Clip frame indices of the keyframes of a turn right after frame ``trigger`` (oldest first)."""
        first = max(0, trigger + 1 - self.cfg.history_frames)
        return [first + i for i in select_keyframe_indices(features[first:trigger + 1], self.cfg)]

    def sample(self, messages: list[dict], plain: StreamSample, frames: np.ndarray,
               objects: list[list[LabelledObject]] | None = None) -> ThinkingSample:
        """The plain sample of ``messages`` with a fork per thought turn; ``frames``: the clip's general-size pixels;
        ``objects``: per frame, its labelled objects (``data.synth_objects``; needed where ``needs_objects``)."""
        ids, labels = plain.input_ids.tolist(), plain.labels.tolist()
        placeholder = self.fmt.ids.placeholder
        needs_features = self.extra_questions > 0 or any(thinks(m, self.mode) for m in messages)
        features = novelty_features(frames, self.novelty_cells) if needs_features else None
        build = _Build(ids, labels)
        extras = self._extra_forks(ids, frames, features, objects) if self.extra_questions else []
        question = None  # the last user turn so far
        for message, (start, stop) in zip(messages, plain.spans):
            if message["role"] == "user":
                question = message["content"]
            frames_before = sum(1 for i in ids[:start] if i == placeholder) // self.fmt.tokens_per_frame
            if not thinks(message, self.mode) or frames_before == 0:
                continue
            while extras and extras[0][0] <= start:
                self._fork(build, *extras.pop(0))
            after_stream = ids[start - 1] == placeholder
            header = len(self.fmt.assistant_header_ids(after_stream))
            chosen = self.keyframes_at(frames, frames_before - 1, features)
            weight = self.detail_weight if message.get("question_kind") == DETAIL else 1.0
            asked = self._asked_object(objects, frames_before - 1, question, message)
            self._fork(build, start, chosen, self._regions(frames, chosen), self._restated(message, question),
                       ids[start + header:stop], weight, asked)
            build.out.main(ids[start:stop], [self.fmt.cfg.ignore_index] * (stop - start), start)  # seen, not learned
            build.done = stop
        for extra in extras:
            self._fork(build, *extra)
        out = build.out
        out.main(ids[build.done:], labels[build.done:], build.done)
        return ThinkingSample(
            torch.tensor(out.ids, dtype=torch.long), torch.tensor(out.labels, dtype=torch.long),
            torch.tensor(out.positions, dtype=torch.long), torch.tensor(out.branches, dtype=torch.long),
            torch.tensor(out.template, dtype=torch.bool), list(build.slots), build.runs,
            torch.tensor(out.weights, dtype=torch.float) if self.detail_weight != 1.0 else None, build.tag_slots)

    def _fork(self, build: "_Build", start: int, chosen: list[int], regions: list[list], question: str | None,
              body: list[int], weight: float, asked: LabelledObject | None = None) -> None:
        """A fork at ``start`` (the main context copied up to it first): the template on ``chosen`` keyframes with
        ``regions``, ``question`` restated (None: not), then ``body`` (the answer and EOS) learned with ``weight``.
        ``asked``: the object the answer is about; with ``keyframes.region_order: question_last`` the trigger
        keyframe's first region holding it is laid out last (the engine ranks by the tags instead), looked for among
        the trigger's ``question_candidates`` proposals where those are on (``_regions`` proposes them); the
        trigger keeps ``max_regions``."""
        if regions:
            holding = None
            if self.cfg.region_order == "question_last" and asked is not None:
                holding = next((i for i, r in enumerate(regions[-1]) if asked.centre_in((r.x0, r.y0, r.x1, r.y1))),
                               None)
            regions = regions[:-1] + [asked_last(regions[-1], holding, self.cfg.max_regions)]
        ignore, placeholder = self.fmt.cfg.ignore_index, self.fmt.ids.placeholder
        build.out.main(build.ids[build.done:start], build.labels[build.done:start], build.done)
        build.done = start
        empty_tags = [[""] * len(rs) for rs in regions] if self.cfg.region_tags else None  # filled by train.region_tags
        layout = template_layout(self.fmt, self.grid_side, regions, self.cfg, self.template,
                                 build.ids[start - 1] == placeholder, question, empty_tags)
        build.tag_slots += [len(build.out.ids) + slot for slot in tag_slots(layout)]
        for run in layout.runs:
            build.runs.append(replace(run, keyframe=build.slots.setdefault(chosen[run.keyframe], len(build.slots))))
        prefix = len(layout.input_ids) - 1  # template tokens that predict no target
        build.out.fork(layout.input_ids + body, [ignore] * prefix + body + [ignore], start,
                       [i == placeholder for i in layout.input_ids] + [False] * len(body),
                       [1.0] * prefix + [weight] * len(body) + [1.0])

    def _extra_forks(self, ids: list[int], frames: np.ndarray, features: torch.Tensor,
                     objects: list[list[LabelledObject]] | None) -> list[tuple]:
        """Up to ``extra_questions`` forks ``(start, chosen, regions, question, body, weight)`` in order, each after a
        distinct frame (never the first), asking about a labelled object whose centre a region of the trigger
        keyframe covers (one of its ``question_candidates`` proposals where those are on). Frames are drawn by a
        generator seeded from the sample's ids: the same episode gets the same questions each epoch, on any loader
        worker."""
        if objects is None or len(objects) != len(frames):
            raise ValueError("extra_detail_questions needs the labelled objects of every frame of the clip")
        placeholder, per_frame = self.fmt.ids.placeholder, self.fmt.tokens_per_frame
        frame_ends = [i + 1 for i, t in enumerate(ids) if t == placeholder][per_frame - 1::per_frame]  # [T]
        rng = np.random.default_rng(zlib.crc32(np.asarray(ids, np.int64).tobytes()))
        extras = []
        for frame in rng.permutation(np.arange(1, len(frame_ends))).tolist():
            if len(extras) == self.extra_questions:
                break
            chosen = self.keyframes_at(frames, frame, features)
            regions = self._regions(frames, chosen)
            covered = [o for o in objects[frame] if any(o.centre_in((r.x0, r.y0, r.x1, r.y1)) for r in regions[-1])]
            if covered:
                asked = covered[int(rng.integers(len(covered)))]
                extras.append((frame_ends[frame], chosen, regions, asked.question,
                               self.fmt.assistant_body_ids(asked.answer), self.detail_weight, asked))
        return sorted(extras, key=lambda e: e[0])

    def _asked_object(self, objects: list[list[LabelledObject]] | None, frame: int, question: str | None,
                      message: dict) -> LabelledObject | None:
        """The labelled object on ``frame`` that the question this answer is for asks about (its catalogue question
        is the question's text), where ``keyframes.region_order`` needs it; else None."""
        if self.cfg.region_order != "question_last" or question is None or not message.get("answers_question"):
            return None
        if objects is None:
            raise ValueError("keyframes.region_order 'question_last' needs the labelled objects of every frame")
        return next((o for o in objects[frame] if o.question == question), None)

    def _restated(self, message: dict, question: str | None) -> str | None:
        """The question restated after the template of ``message`` (``thinking.question: after``), or None."""
        if not (self.restates and message.get("answers_question", False)):
            return None
        if question is None:
            raise ValueError("an answer marked answers_question has no user turn before it to restate")
        return question

    def _regions(self, frames: np.ndarray, chosen: list[int]) -> list[list]:
        """The proposer's regions on the ``chosen`` keyframes; the trigger's ``question_candidates`` first proposals
        where those are on (``_fork`` keeps ``max_regions`` of them)."""
        if not self.wants_regions:
            return [[] for _ in chosen]
        keyframes = frames[chosen]
        return propose_regions(self.proposer, list(keyframes), self.region_grids(keyframes), self.cfg,
                               self.cfg.question_candidates)


@dataclass
class _Build:
    """A thinking sample being built: the plain ids and labels, what is copied so far and the keyframes used."""

    ids: list[int]
    labels: list[int]
    out: "_Sequence" = field(default_factory=lambda: _Sequence())
    done: int = 0  # plain ids copied so far
    slots: dict[int, int] = field(default_factory=dict)  # clip frame index -> keyframe slot
    runs: list[PoolRun] = field(default_factory=list)
    tag_slots: list[int] = field(default_factory=list)


class _Sequence:
    """The thinking sample's columns, appended piece by piece."""

    def __init__(self):
        self.ids, self.labels, self.positions, self.branches, self.template = [], [], [], [], []
        self.weights: list[float] = []
        self.forks = 0

    def main(self, ids: list[int], labels: list[int], first_position: int) -> None:
        self._add(ids, labels, first_position, 0, [False] * len(ids), [1.0] * len(ids))

    def fork(self, ids: list[int], labels: list[int], first_position: int, template: list[bool],
             weights: list[float]) -> None:
        self.forks += 1
        self._add(ids, labels, first_position, self.forks, template, weights)

    def _add(self, ids, labels, first_position, branch, template, weights) -> None:
        self.weights += weights
        self.ids += ids
        self.labels += labels
        self.positions += range(first_position, first_position + len(ids))
        self.branches += [branch] * len(ids)
        self.template += template


def collate_thinking(items: list[dict], longest: int) -> dict:
    """The thinking columns of a batch (right-padded to ``longest``) and its keyframes in reading order."""
    batch = {
        "position_ids": torch.zeros(len(items), longest, dtype=torch.long),
        "branch_ids": torch.zeros(len(items), longest, dtype=torch.long),
        "template_mask": torch.zeros(len(items), longest, dtype=torch.bool),
    }
    if any(item["thinking"].label_weights is not None for item in items):
        batch["label_weights"] = torch.ones(len(items), longest)
    pixels, runs, crops = [], [], []
    for row, item in enumerate(items):
        sample: ThinkingSample = item["thinking"]
        n = sample.input_ids.numel()
        batch["position_ids"][row, :n] = sample.position_ids
        batch["branch_ids"][row, :n] = sample.branch_ids
        batch["template_mask"][row, :n] = sample.template_mask
        if sample.label_weights is not None:
            batch["label_weights"][row, :n] = sample.label_weights
        offset = sum(len(p) for p in pixels)
        runs += [replace(r, keyframe=r.keyframe + offset) for r in sample.runs]
        pixels.append(item["keyframe_pixels"])
        crops.append(item["crop_pixels"])
    if any(item["thinking"].tag_slots for item in items):
        batch["tag_slots"] = [item["thinking"].tag_slots for item in items]
    if runs:
        batch["keyframe_pixels"] = torch.from_numpy(np.ascontiguousarray(np.concatenate(pixels)))
        batch["keyframe_runs"] = runs
        if sum(len(c) for c in crops):
            batch["keyframe_crop_pixels"] = torch.from_numpy(np.ascontiguousarray(np.concatenate(crops)))
    return batch
