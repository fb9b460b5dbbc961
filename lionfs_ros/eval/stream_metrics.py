"""Teacher-forced stream metrics with VideoLLM-online's definitions (its ``stream_evaluate``).

A sample is split into turns, each ending with an EOS token. In a turn, the *stream positions*
are the learned frame-decision positions (last placeholder of a learned frame) and the *LM
positions* the other learned ones (the assistant's answer). Per turn:

- LM-PPL: ``exp`` of the mean cross-entropy over the LM positions.
- LM-Correctness: the fraction of LM tokens predicted right before the first wrong one.
- frame diff: with ``S`` learned decisions, if the model speaks at decision ``j`` (first one),
  ``S - j - 1`` frames early (0 = on time). If it never speaks in the turn (late), the cache is
  trimmed right after the turn's last frame and the next turn's frames are fed (at most
  ``min(frames of next turn, frames of this turn - 1)``, so early and late errors have equal
  range); speaking at appended frame ``j`` is ``j + 1`` frames late, never speaking is as late
  as the frames appended. The last turn, or nothing to append, counts as on time (the stream end
  is assumed to trigger a response). TimeDiff = mean ``|frame diff|`` / frame rate (seconds).
- Fluency: with ``v`` stream and ``m`` LM positions: on time ``(v + correct LM tokens) / (v + m)``,
  early by ``k`` frames ``(v - k) / (v + m)``, late ``(v - 1) / (v + m)``.

"Speak" follows the online rule (``model.stream_decision``, the engine's): P(interval) < threshold, or the
interval token is not the argmax.
Averages over turns; a sample with none of a kind gets 1 (PPL, Fluency, Correctness) or 0 (TimeDiff).
One deliberate difference: the frame offset of later turns advances over turns without labels too.

Two additions, reported next to the original metrics: ``lm_correctness_answer``, the same
correctness with the assistant header left out (the header is scored with the slow path off but
given, as part of the template, with it on: only this one compares the two), and each turn's
correctness (``turn_correctness``, for a breakdown by kind of turn).

Slow path on (``answer_branch``, see ``eval.slow_path``): a turn's LM positions are scored on the
answer written after the thinking template on a fork of the context, not in the main sequence;
the frame decisions are the main sequence's (the engine's main context never holds the template).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from lionfs_ros.model.modeling_lionfs import respond_mask

AnswerBranch = Callable[[int], tuple[torch.Tensor, torch.Tensor]]
"""``start`` of an assistant turn -> ``(logits [m, V], targets [m])`` of its answer scored elsewhere (the slow path)."""

FutureDecisions = Callable[[int, int, int], torch.Tensor]
"""``(trim_length, first_frame, num_frames) -> logits [num_frames, V]`` at the appended frames' decision positions."""


@dataclass
class StreamMetrics:
    lm_ppl: float
    time_diff: float  # seconds
    fluency: float
    lm_correctness: float
    frame_diff: float  # mean |frame diff|, in frames
    lm_correctness_answer: float  # lm_correctness without the assistant header tokens
    turn_correctness: list[float] = field(default_factory=list, compare=False)  # per scored turn, in order

    def to_dict(self) -> dict[str, float]:
        out = asdict(self)
        out.pop("turn_correctness")
        return out


@dataclass(frozen=True)
class TokenSpec:
    placeholder: int
    interval: int
    eos: int
    tokens_per_frame: int
    ignore_index: int = -100
    headers: tuple[tuple[int, ...], ...] = ()  # the assistant header's ids (each stream-end variant)


def _correct_prefix(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """Tokens predicted right before the first wrong one."""
    wrong = (logits.argmax(dim=-1) != labels).nonzero()
    return int(wrong[0, 0]) if wrong.numel() else labels.numel()


def _header_length(labels: torch.Tensor, headers: tuple[tuple[int, ...], ...]) -> int:
    """How many leading ``labels`` are an assistant header (the longest variant that matches; 0 if none)."""
    found = [len(h) for h in headers if 0 < len(h) < labels.numel() and tuple(labels[: len(h)].tolist()) == h]
    return max(found, default=0)


def turn_spans(input_ids: torch.Tensor, eos: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of every turn; a turn ends right after an EOS (trailing tokens form no turn)."""
    stops = ((input_ids == eos).nonzero().squeeze(-1) + 1).tolist()
    return list(zip([0] + stops[:-1], stops))


def evaluate_logits(
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    logits: torch.Tensor,
    spec: TokenSpec,
    future: FutureDecisions,
    threshold: float = 0.0,
    frame_fps: float = 1.0,
    answer_branch: AnswerBranch | None = None,
) -> StreamMetrics:
    """Metrics of one sample from its teacher-forced ``logits [L, V]`` (ids and labels ``[L]``)."""
    spans = turn_spans(input_ids, spec.eos)
    n = spec.tokens_per_frame
    ppls, diffs, fluencies, correctness, answer_correctness = [], [], [], [], []
    past_frames = 0
    for r, (start, stop) in enumerate(spans):
        ids, lab, lg = input_ids[start:stop], labels[start:stop], logits[start:stop]
        turn_frames = int((ids == spec.placeholder).sum()) // n
        learned = lab != spec.ignore_index
        stream = learned & (ids == spec.placeholder)
        lm = learned & ~stream
        num_correct = None
        num_lm = int(lm.sum())
        if lm.any():
            lm_logits, lm_labels = lg[lm], lab[lm]
            if answer_branch is not None:
                lm_logits, lm_labels = answer_branch(start + int(lm.nonzero()[0, 0]))
                num_lm = lm_labels.numel()
            ppls.append(float(F.cross_entropy(lm_logits.float(), lm_labels).exp()))
            num_correct = _correct_prefix(lm_logits, lm_labels)
            correctness.append(num_correct / num_lm)
            head = _header_length(lm_labels, spec.headers) if answer_branch is None else 0
            answer_correctness.append(_correct_prefix(lm_logits[head:], lm_labels[head:]) / (num_lm - head))
        diff = None
        if stream.any():
            diff = _frame_diff(r, spans, input_ids, lg, stream, start, turn_frames, past_frames, spec, future, threshold)
            diffs.append(abs(diff))
        if num_correct is not None and diff is not None:
            v, total = int(stream.sum()), int(stream.sum()) + num_lm
            if diff == 0:
                fluencies.append((v + num_correct) / total)
            elif diff > 0:
                fluencies.append((v - diff) / total)
            else:
                fluencies.append((v - 1) / total)
        past_frames += turn_frames
    frame_diff = _mean(diffs, 0.0)
    return StreamMetrics(
        lm_ppl=_mean(ppls, 1.0), time_diff=frame_diff / frame_fps, fluency=_mean(fluencies, 1.0),
        lm_correctness=_mean(correctness, 1.0), frame_diff=frame_diff,
        lm_correctness_answer=_mean(answer_correctness, 1.0), turn_correctness=correctness,
    )


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def _frame_diff(r, spans, input_ids, turn_logits, stream, start, turn_frames, past_frames, spec, future, threshold) -> int:
    """Positive: frames early; 0: on time; negative: frames late."""
    speak = respond_mask(turn_logits[stream], spec.interval, threshold)
    if speak.any():
        return int(stream.sum()) - int(speak.nonzero()[0, 0]) - 1
    if r == len(spans) - 1:
        return 0
    next_start, next_stop = spans[r + 1]
    next_frames = int((input_ids[next_start:next_stop] == spec.placeholder).sum()) // spec.tokens_per_frame
    to_append = min(next_frames, turn_frames - 1)
    if to_append <= 0:
        return 0
    trim = start + int(stream.nonzero()[-1, 0]) + 1
    speak = respond_mask(future(trim, past_frames + turn_frames, to_append), spec.interval, threshold)
    return -(int(speak.nonzero()[0, 0]) + 1) if speak.any() else -to_append


def future_from_model(model, frame_embeds: torch.Tensor, cache) -> FutureDecisions:
    """The late-response branch on a LionFS model: trim the full-sequence cache, feed ``[interval] + frame`` per frame."""

    def future(trim: int, first_frame: int, num_frames: int) -> torch.Tensor:
        branch = cache.trim(trim)
        ids = model.formatter.frame_ids(after_frame=True) * num_frames
        out = model.step_ids(ids, frame_embeds[first_frame:first_frame + num_frames], branch)
        per_frame = len(ids) // num_frames
        return out.logits[0, per_frame - 1 :: per_frame]  # [num_frames, V], each frame's last placeholder

    return future


@torch.no_grad()
def stream_evaluate(
    model,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    frame_embeds: torch.Tensor | None = None,
    general: torch.Tensor | None = None,
    ego: torch.Tensor | None = None,
    threshold: float = 0.0,
    frame_fps: float | None = None,
    answer_branch: Callable[[object], AnswerBranch] | None = None,
) -> StreamMetrics:
    """Teacher-forced metrics of one sample (``input_ids``/``labels`` ``[L]`` or ``[1, L]``) on a LionFS model.

    ``answer_branch``: given the full-sequence cache, how assistant turns are scored instead
    (``slow_path.answer_branch``: after the thinking template)."""
    input_ids, labels = input_ids.reshape(-1).to(model.device), labels.reshape(-1).to(model.device)
    if frame_embeds is None and general is not None:
        frame_embeds = model.embed_frames(general, ego)
    cache = model.new_cache()
    out = model(input_ids[None], frame_embeds=frame_embeds, past_key_values=cache)
    ids = model.token_ids
    # The decision position predicts a turn's first token, so the scored tokens start with the header or its tail.
    full = [tuple(model.formatter.assistant_header_ids(after_stream=after)) for after in (True, False)]
    headers = tuple({h for f in full for h in (f, f[1:]) if h})
    spec = TokenSpec(ids.placeholder, ids.interval, ids.eos, model.tokens_per_frame, model.config.stream.ignore_index,
                     headers)
    return evaluate_logits(
        input_ids, labels, out.logits[0], spec, future_from_model(model, frame_embeds, cache),
        threshold=threshold, frame_fps=frame_fps or model.config.stream.frame_fps,
        answer_branch=None if answer_branch is None else answer_branch(cache),
    )


def average_metrics(samples: list[StreamMetrics]) -> StreamMetrics:
    """Mean of each metric over samples (how VideoLLM-online reports a dataset)."""
    if not samples:
        raise ValueError("no samples to average")
    keys = samples[0].to_dict().keys()
    return StreamMetrics(**{k: sum(s.to_dict()[k] for s in samples) / len(samples) for k in keys})
