"""Free-running replay of a stream and trigger precision / recall / F1.

The teacher-forced metrics feed the true responses at their true times; here the model runs as
it would online: frame by frame, it decides whether to speak, and when it does, it writes its
own response (greedy) into its context and the stream goes on. Each response's frame is a
predicted trigger; the true triggers are the narrations' frames. A prediction matches a truth at
most ``tolerance`` seconds away, one to one (greedy in time order, which is optimal on a line).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from lionfs_ros.data.stream_examples import StreamExample

from .slow_path import ClipFrames, SlowPath, slow_answer

DEFAULT_MAX_NEW_TOKENS = 32


@dataclass
class Trigger:
    frame: int
    time: float
    text: str


@dataclass
class ReplayResult:
    triggers: list[Trigger]
    frame_step_ms: list[float] = field(default_factory=list)  # LLM step + decision per frame (frames precomputed)


@torch.no_grad()
def replay(model, example: StreamExample, frame_embeds: torch.Tensor, threshold: float,
           max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, slow: SlowPath | None = None,
           clip: ClipFrames | None = None) -> ReplayResult:
    """Feed ``frame_embeds [T, n, d]`` one frame at a time in the training layout; respond when the model says so.

    ``slow`` (a ``slow_path.SlowPath`` thinking narrations, with ``clip``): the response is written by
    the engine's slow thinker on a fork after the thinking template, then committed as the engine does."""
    f = model.formatter
    cache = model.new_cache()
    model.step_ids(f.system_ids() + f.stream_open_ids() + f.frame_ids(after_frame=False), frame_embeds[:1], cache)
    in_stream = True
    if example.instruction:
        model.step_ids(f.user_ids(example.instruction, after_stream=True), None, cache)
        in_stream = False
    result = ReplayResult(triggers=[])
    for index in range(1, example.num_frames):
        start = time.perf_counter()
        ids = ([] if in_stream else f.stream_open_ids()) + f.frame_ids(after_frame=in_stream)
        out = model.step_ids(ids, frame_embeds[index:index + 1], cache)
        speak = bool(model.should_respond(out.logits[0, -1], threshold))
        result.frame_step_ms.append((time.perf_counter() - start) * 1e3)
        in_stream = True
        if not speak:
            continue
        if slow is not None and slow.thinks_narrations():
            text = slow_answer(model, cache, True, clip, index, slow, max_new_tokens)
            if text:  # the engine commits a non-empty answer only
                model.step_ids(f.assistant_header_ids(after_stream=True) + f.assistant_body_ids(text), None, cache)
            in_stream = not text
        else:
            tokens = model.generate(f.assistant_header_ids(after_stream=True), cache, max_new_tokens)
            body = tokens[:-1] if tokens and tokens[-1] == model.token_ids.eos else tokens
            model.step_ids([model.token_ids.eos], None, cache)  # close the turn as the training layout does
            text = model.tokenizer.decode(body, skip_special_tokens=True).strip()
            in_stream = False
        result.triggers.append(Trigger(index, index / example.frame_fps, text))
    return result


def match_triggers(predicted: list[float], truth: list[float], tolerance: float) -> list[tuple[int, int]]:
    """One-to-one matches ``(predicted index, truth index)`` with ``|p - t| <= tolerance``, both sorted by time."""
    pairs, i, j = [], 0, 0
    while i < len(predicted) and j < len(truth):
        if abs(predicted[i] - truth[j]) <= tolerance + 1e-9:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif predicted[i] < truth[j]:
            i += 1
        else:
            j += 1
    return pairs


@dataclass
class TriggerCounts:
    predicted: int = 0
    truth: int = 0
    matched: int = 0
    text_exact: int = 0  # matched responses whose words equal the true narration's

    def add(self, other: "TriggerCounts") -> None:
        self.predicted += other.predicted
        self.truth += other.truth
        self.matched += other.matched
        self.text_exact += other.text_exact

    def scores(self) -> dict[str, float]:
        precision = self.matched / self.predicted if self.predicted else 0.0
        recall = self.matched / self.truth if self.truth else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1,
                "text_exact": self.text_exact / self.matched if self.matched else 0.0}


def normalize_text(text: str) -> str:
    """Lower case, punctuation and extra spaces removed: how answers and narrations are compared."""
    kept = "".join(ch.lower() if ch.isalnum() else " " for ch in text)
    return " ".join(kept.split())


def score_replay(example: StreamExample, result: ReplayResult, tolerance: float) -> dict[str, TriggerCounts]:
    """Counts overall (key ``all``) and per narration kind (recall side only for kinds)."""
    narrations = example.narrations()
    truth_frames = [example.frame_of(n.time) for n in narrations]
    truth = [frame / example.frame_fps for frame in truth_frames]
    predicted = [t.time for t in result.triggers]
    pairs = match_triggers(predicted, truth, tolerance)
    counts = {"all": TriggerCounts(len(predicted), len(truth), len(pairs))}
    for p, t in pairs:
        if normalize_text(result.triggers[p].text) == normalize_text(narrations[t].text):
            counts["all"].text_exact += 1
    matched_truth = {t for _, t in pairs}
    for index, narration in enumerate(narrations):
        kind = counts.setdefault(f"kind:{narration.kind}", TriggerCounts())
        kind.truth += 1
        kind.matched += index in matched_truth
    return counts
