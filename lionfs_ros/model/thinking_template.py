"""Multi-granularity Keyframe Augmentation: the keyframe rule and the thinking template.

Part of the model: its settings are the model's ``thinking`` config (``keyframes`` for the
template, ``regions`` for the region proposer), saved in ``config.json``; training lays out the
samples with these functions and the engine's slow thinker feeds the same template at run time.

Keyframe rule (``select_keyframe_indices``; the engine applies it to its history of decided
frames, ``engine.keyframes.select_keyframes``): the triggering frame is always a keyframe. From the last
``history_frames`` decided frames the others are added greedily, each time the frame whose
fast-path feature (mean of its fused frame tokens) is farthest, by cosine distance, from every
keyframe chosen so far (max-min, ties to the newer frame), while that distance is at least
``min_novelty``; so near-duplicates of the trigger add nothing and a change that happened a few
frames before the trigger is kept. Keyframes are returned oldest first.

Thinking template (``build_thinking_inputs``), inserted between the context and the assistant's
answer. With ``<v>`` the model's frame placeholder, for keyframes k = 1..K (oldest first)::

    []]\\nKeyframes: [<v>*g1^2 <v>*g2^2 ... regions:<v>*(R_k*b^2)] ... [...]\\nAssistant:

i.e. ``stream_close`` (only when the context ends inside the stream) + ``open``; per keyframe
``keyframe_open``, then one run of ``g*g`` grid tokens per ``g`` in ``grid_sizes`` (the patch grid
average-pooled to ``g x g``, row-major), then (``tiles > 0``) ``tile_grid^2`` tokens per tile of
a ``tiles x tiles`` cut of the keyframe (row-major, each tile re-encoded by the general tower from
the full-resolution pixels), then ``regions_open`` and ``b*b`` box tokens per region
(``b = box_grid``, regions in proposer order; pooled from the patch grid inside the box, or with
``box_source: crop`` from the box's crop re-encoded) if the keyframe has regions, each region's
run followed, with ``region_tags``, by the text of what the model's crop reader reads on its crop
(`` red cube labelled K``: ``model.crop_reader``; ``LionFSModel.region_tags``), then
``keyframe_close``; then (a model trained with ``thinking.question: after``, answering a question)
the question restated as a user turn, so the answer follows its question as in every other turn;
finally the model's assistant header. Every piece is tokenized on its own
(like the stream format), the ``<v>`` runs are filled from ``project_general`` of the pooled
patch features, and those tokens are marked non-visual so a token-dropping layer never drops them.

The template's ids and the runs that fill it come from ``template_layout`` (text and arithmetic,
no model pass) and its embeddings from ``fill_template`` (``model.keyframe_tokens.pool_runs`` +
``project_general``): training lays out the same template with the same function, and the
model's training forward fills it with the same pooling (``LionFSModel.forward(keyframe_runs=...)``).

Two uses, one function:
- on a live context (the engine's fork): ``context=None``; the ids continue the fork;
- from portable fields (a remote slow thinker, training): ``context=[(role, text), ...]`` builds
  the whole prompt: system prompt, the dialogue, a stream of the keyframes as ordinary frames
  (for a fused model the egocentric tokens of a keyframe are its own, repeated over the
  ego window), the question as a user turn if any, then the template.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .configuration_lionfs import KeyframeConfig
from .keyframe_tokens import CROP, PoolRun, pool_runs
from .region_order import matched_index, moved_last
from .regions import Region, RegionProposer, make_proposer
from .template_regions import crop_grids_in_order, crop_pixels, propose_regions, question_pick, read_tags


@dataclass(frozen=True)
class ThinkingTemplate:
    open: str = "\nKeyframes:"
    keyframe_open: str = " ["
    regions_open: str = " regions:"
    keyframe_close: str = "]"


@dataclass
class TokenAccounting:
    text: int = 0  # text tokens (template pieces, headers, dialogue)
    frame: int = 0  # ordinary frame placeholders (portable prompts)
    grid: int = 0  # keyframe grid tokens
    box: int = 0  # region box tokens

    @property
    def total(self) -> int:
        return self.text + self.frame + self.grid + self.box

    def add(self, other: "TokenAccounting") -> None:
        self.text, self.frame = self.text + other.text, self.frame + other.frame
        self.grid, self.box = self.grid + other.grid, self.box + other.box


@dataclass
class TemplateLayout:
    """The thinking template's ids and the pooled runs that fill its placeholders, in reading order."""

    input_ids: list[int]
    runs: list[PoolRun]  # keyframe = index among this template's keyframes (oldest first)
    pieces: list[tuple[str, int]]
    accounting: TokenAccounting


@dataclass
class ThinkingInputs:
    input_ids: torch.Tensor  # [L] long
    embeds: torch.Tensor | None  # [P, d]: fills the placeholders of input_ids in order (None: there are none)
    visual_mask: torch.Tensor  # [L] bool: ordinary frame tokens only (droppable)
    regions: list[list[Region]]  # per keyframe
    accounting: TokenAccounting
    pieces: list[tuple[str, int]] = field(default_factory=list)  # (what, tokens) in order


def select_keyframe_indices(features: torch.Tensor, config: KeyframeConfig) -> list[int]:
    """The keyframe rule on per-frame features ``[N, d]`` (the last row is the trigger): indices, ascending."""
    feats = F.normalize(features[-config.history_frames:].float(), dim=-1)  # [N, d]
    skipped = features.shape[0] - feats.shape[0]
    chosen = [feats.shape[0] - 1]
    while len(chosen) < config.num_keyframes:
        distance = 1.0 - feats @ feats[chosen].T  # [N, |chosen|]
        nearest = distance.min(dim=1).values
        nearest[chosen] = -1.0
        best = max(range(feats.shape[0]), key=lambda i: (float(nearest[i]), i))
        if float(nearest[best]) < config.min_novelty:
            break
        chosen.append(best)
    return [skipped + i for i in sorted(chosen)]


class _Builder:
    """Accumulates ids, placeholder embeddings and accounting, piece by piece."""

    def __init__(self, model):
        self.model, self.fmt = model, model.formatter
        self.ids: list[int] = []
        self.visual: list[bool] = []
        self.embeds: list[torch.Tensor] = []
        self.acc = TokenAccounting()
        self.pieces: list[tuple[str, int]] = []

    def text(self, ids: list[int], what: str) -> None:
        self.ids += ids
        self.visual += [False] * len(ids)
        self.acc.text += len(ids)
        self.pieces.append((what, len(ids)))

    def tokens(self, embeds: torch.Tensor, kind: str, ids: list[int] | None = None) -> None:
        """Placeholder run filled by ``embeds [m, d]``; ``ids`` when the run carries other tokens (interval)."""
        ids = ids if ids is not None else [self.fmt.ids.placeholder] * embeds.shape[0]
        self.ids += ids
        self.visual += [i == self.fmt.ids.placeholder and kind == "frame" for i in ids]
        self.embeds.append(embeds)
        setattr(self.acc, kind, getattr(self.acc, kind) + embeds.shape[0])
        self.pieces.append((kind, len(ids)))

    def template(self, layout: TemplateLayout, embeds: torch.Tensor) -> None:
        """The whole thinking template; ``embeds [P, d]`` fill its placeholders (none of them droppable)."""
        self.ids += layout.input_ids
        self.visual += [False] * len(layout.input_ids)
        self.embeds.append(embeds)
        self.acc.add(layout.accounting)
        self.pieces += layout.pieces

    def finish(self, regions: list[list[Region]]) -> ThinkingInputs:
        embeds = torch.cat(self.embeds).reshape(-1, self.model.hidden_size) if self.embeds else None
        return ThinkingInputs(
            input_ids=torch.tensor(self.ids, dtype=torch.long), embeds=embeds,
            visual_mask=torch.tensor(self.visual, dtype=torch.bool), regions=regions, accounting=self.acc,
            pieces=self.pieces,
        )


def grid_sizes(config: KeyframeConfig, grid_side: int) -> list[int]:
    """The granularities used on a ``grid_side x grid_side`` patch grid: clipped to it, each once, in order."""
    out: list[int] = []
    for g in config.grid_sizes:
        g = min(int(g), grid_side)
        if g not in out:
            out.append(g)
    return out


def template_layout(
    fmt,
    grid_side: int,
    regions: Sequence[Sequence[Region]],
    config: KeyframeConfig,
    template: ThinkingTemplate,
    after_stream: bool,
    question: str | None = None,
    tags: Sequence[Sequence[str]] | None = None,
) -> TemplateLayout:
    """The template for ``len(regions)`` keyframes (``regions[k]``: keyframe k's boxes) on a ``grid_side`` patch grid.

    ``fmt``: the model's ``StreamFormatter``; ``after_stream``: the context ends inside the stream;
    ``question``: restated as a user turn between the last keyframe and the assistant header (None: not);
    ``tags`` (``region_tags``; ``tags[k][r]``: keyframe k's region r): each region's box run is followed by its
    tag's text (a ``tag`` piece; an empty tag is a piece of no tokens: ``tag_slots`` finds where it goes).
    """
    ids: list[int] = []
    runs: list[PoolRun] = []
    pieces: list[tuple[str, int]] = []
    acc = TokenAccounting()

    def text(piece: list[int], what: str) -> None:
        ids.extend(piece)
        acc.text += len(piece)
        pieces.append((what, len(piece)))

    def run(kind: str, new_runs: list[PoolRun]) -> None:
        count = sum(r.num_tokens for r in new_runs)
        ids.extend([fmt.ids.placeholder] * count)
        runs.extend(new_runs)
        setattr(acc, kind, getattr(acc, kind) + count)
        pieces.append((kind, count))

    text(fmt.text_ids((fmt.cfg.stream_close if after_stream else "") + template.open), "open")
    for k, boxes in enumerate(regions):
        text(fmt.text_ids(template.keyframe_open), "keyframe_open")
        for g in grid_sizes(config, grid_side):
            run("grid", [PoolRun(k, "grid", g)])
        if config.tiles:
            run("grid", [PoolRun(k, "tile", config.tile_grid, box, CROP) for box in tile_boxes(config.tiles)])
        if boxes:
            text(fmt.text_ids(template.regions_open), "regions_open")
            box_runs = [PoolRun(k, "box", config.box_grid, (r.x0, r.y0, r.x1, r.y1), config.box_source) for r in boxes]
            if tags is None:
                run("box", box_runs)
            for r, box_run in enumerate(box_runs if tags is not None else []):
                run("box", [box_run])
                text(fmt.text_ids(tags[k][r]), "tag")
        text(fmt.text_ids(template.keyframe_close), "keyframe_close")
    if question is not None:
        text(fmt.user_ids(question, after_stream=False), "question")
    text(fmt.assistant_header_ids(after_stream=False), "assistant_header")
    return TemplateLayout(ids, runs, pieces, acc)


def tag_slots(layout: TemplateLayout) -> list[int]:
    """Where each region's tag starts in ``layout.input_ids`` (right after its box run), in reading order."""
    ends = np.cumsum([0] + [n for _, n in layout.pieces])
    return [int(ends[i]) for i, (what, _) in enumerate(layout.pieces) if what == "tag"]


def tile_boxes(tiles: int) -> list[tuple[float, float, float, float]]:
    """The normalized boxes of a ``tiles x tiles`` cut of a frame, row-major."""
    step = 1.0 / tiles
    return [(c * step, r * step, (c + 1) * step, (r + 1) * step) for r in range(tiles) for c in range(tiles)]


def fill_template(model, grids: torch.Tensor, runs: Sequence[PoolRun], crops: torch.Tensor | None = None,
                  crop_grids: torch.Tensor | None = None) -> torch.Tensor:
    """Keyframe patch grids ``[K, h, w, C]`` (+ the ``crop`` runs' pixels ``[N, 3, S, S]``, read by the
    model's crop tower if it has one, ``LionFSModel.crop_grid``, or their patch grids ``crop_grids``
    ``[N, h, w, C]`` read already) -> the template's placeholder embeddings ``[P, d]``."""
    if crop_grids is None and crops is not None and len(crops):
        crop_grids = model.crop_grid(crops)  # [N, h, w, C]
    return model.project_general(pool_runs(grids, runs, crop_grids))


def keyframe_pixels(model, keyframes: Sequence[np.ndarray]) -> torch.Tensor:
    """Keyframes of any sizes -> general-encoder pixels ``[K, 3, S, S]``."""
    return torch.cat([model.preprocess(rgb) for rgb in keyframes])


def _frame_embeds(model, keyframes: Sequence[np.ndarray], pixels: torch.Tensor) -> torch.Tensor:
    """Keyframes as ordinary stream frames ``[K, n, d]`` (a fused model gets each keyframe's own ego tokens)."""
    if model.ego is None:
        return model.embed_frames(pixels)
    ratio = model.config.ego.frames_per_frame
    ego = torch.cat([model.preprocess(rgb, "ego") for rgb in keyframes])  # [K, 3, S', S']
    return model.embed_frames(pixels, ego.repeat_interleave(ratio, dim=0))


def build_thinking_inputs(
    model,
    keyframes: Sequence[np.ndarray],
    *,
    context: Sequence[tuple[str, str]] | None = None,
    query: str | None = None,
    after_stream: bool = True,
    config: KeyframeConfig | None = None,
    template: ThinkingTemplate | None = None,
    proposer: RegionProposer | None = None,
    regions: list[list[Region]] | None = None,
    think: bool = True,
    restate: str | None = None,
    asked: str | None = None,
) -> ThinkingInputs:
    """Model + keyframes (RGB, oldest first; the last is the trigger) + context -> ids and embeddings.

    ``context=None``: the template alone, continuing a live context (``after_stream``: it ends
    inside the stream). ``context=[("system"|"user"|"assistant", text), ...]``: a whole prompt;
    ``query`` (if any) is asked as a user turn after the keyframe stream. ``regions`` overrides the
    proposer (one list per keyframe). ``config`` / ``proposer`` default to the model's
    (``thinking.keyframes``, ``thinking.regions``). ``think=False``: the slow path off, the plain
    assistant header instead of the template (for a model never trained with it). Pure: reads the
    model, changes nothing. ``restate``: a question restated after the template, right before the
    assistant header (``template_layout``'s ``question``: a model with ``thinking.question: after``). ``asked``:
    the question this answer is for, wherever it was fed (``keyframes.region_order: question_last`` ranks the
    regions by it; default ``restate`` or ``query``).
    """
    config = config or model.config.thinking.keyframes
    template = template or ThinkingTemplate()
    proposer = proposer or make_proposer(model.config.thinking.regions)
    if not keyframes:
        raise ValueError("the thinking template needs at least one keyframe")
    b = _Builder(model)
    if not think:
        return _plain_inputs(b, model, keyframes, context, query, after_stream)
    pixels = keyframe_pixels(model, keyframes)
    grids = model.patch_grid(pixels)  # [K, h, w, C]
    question = asked or restate or query
    reorder = config.region_order == "question_last" and bool(question)
    if regions is None:
        widen = reorder and config.question_candidates > config.max_regions
        regions = propose_regions(proposer, keyframes, grids, config, config.question_candidates if widen else 0)
        if widen and regions[-1]:
            regions = regions[:-1] + [question_pick(model, keyframes, regions[-1], config, question)]
            reorder = False  # the asked region is last already
    if context is not None:
        after_stream = _portable_prefix(b, model, keyframes, pixels, context, query)
    layout = template_layout(model.formatter, grids.shape[1], regions, config, template, after_stream, restate)
    crop_grids = None
    if any(run.source == CROP for run in layout.runs):
        processor = model.vision.processor
        crops = processor.normalize(torch.from_numpy(crop_pixels(processor, keyframes, layout.runs, config)))
        crop_grids = model.crop_grid(crops)  # [N, h, w, C]
    if config.region_tags:  # the same runs (and crops), the tags' text after each box run
        tags = read_tags(model, layout.runs, crop_grids, regions)
        last = matched_index(question, tags[-1]) if reorder and regions else None
        if last is not None:  # the asked region next to the answer
            regions = regions[:-1] + [moved_last(regions[-1], last)]
            tags = tags[:-1] + [moved_last(tags[-1], last)]
        read_runs = layout.runs
        layout = template_layout(model.formatter, grids.shape[1], regions, config, template, after_stream, restate, tags)
        if last is not None:  # the crops were read in the proposer's order
            crop_grids = crop_grids_in_order(read_runs, layout.runs, crop_grids)
        regions = [[replace(r, tag=tag.strip()) for r, tag in zip(rs, ts)] for rs, ts in zip(regions, tags)]
    b.template(layout, fill_template(model, grids, layout.runs, crop_grids=crop_grids))
    return b.finish(regions)


def _plain_inputs(b: _Builder, model, keyframes, context, query, after_stream: bool) -> ThinkingInputs:
    """The context (or the portable prompt) straight into the assistant header, as without a slow path."""
    if context is not None:
        after_stream = _portable_prefix(b, model, keyframes, keyframe_pixels(model, keyframes), context, query)
    b.text(model.formatter.assistant_header_ids(after_stream=after_stream), "assistant_header")
    return b.finish([[] for _ in keyframes])


def _portable_prefix(b: _Builder, model, keyframes, pixels, context, query) -> bool:
    """System + dialogue + keyframes as a stream (+ the question). Returns whether it ends inside the stream."""
    fmt = model.formatter
    system = [text for role, text in context if role == "system"]
    b.text(fmt.system_ids(system[0] if system else None), "system")
    for role, text in context:
        if role == "user":
            b.text(fmt.user_ids(text, after_stream=False), "user")
        elif role == "assistant":
            b.text(fmt.assistant_header_ids(after_stream=False) + fmt.assistant_body_ids(text), "assistant")
        elif role != "system":
            raise ValueError(f"context role {role!r} is not one of ('system', 'user', 'assistant')")
    b.text(fmt.stream_open_ids(), "stream_open")
    frames = _frame_embeds(model, keyframes, pixels)  # [K, n, d]
    for k in range(frames.shape[0]):
        b.tokens(frames[k], "frame", fmt.frame_ids(after_frame=k > 0))
    if query:
        b.text(fmt.user_ids(query, after_stream=True), "query")
        return False
    return True


def thinking_token_bound(model, config: KeyframeConfig, template: ThinkingTemplate | None = None,
                         question_tokens: int = 0) -> int:
    """Most tokens the template can add on a live context (for the position checks); ``question_tokens``:
    the most a restated question takes (its user turn, ``thinking.question: after``), else 0."""
    template = template or ThinkingTemplate()
    fmt = model.formatter
    per_keyframe = (
        len(fmt.text_ids(template.keyframe_open)) + sum(g * g for g in grid_sizes(config, model.vision.grid_side))
        + config.tiles ** 2 * config.tile_grid ** 2
        + len(fmt.text_ids(template.regions_open)) + config.max_regions * config.box_grid ** 2
        + len(fmt.text_ids(template.keyframe_close))
    )
    if config.region_tags:
        if model.crop_reader is None:
            raise ValueError("keyframes.region_tags needs the model's crop reader (crop.reader_classes)")
        per_keyframe += config.max_regions * model.crop_reader.longest_tag(fmt)
    head = len(fmt.text_ids(fmt.cfg.stream_close + template.open))
    return head + config.num_keyframes * per_keyframe + question_tokens + len(fmt.assistant_header_ids(after_stream=False))
