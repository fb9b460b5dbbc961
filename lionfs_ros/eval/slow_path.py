"""Evaluation with the slow path on: answers written after the thinking template, as the engine writes them.

With the slow path on, at every thought turn (``mode``: ``answers`` = questions only, ``all`` =
narrations too) the teacher-forced context is forked right before the assistant turn and the
engine's own slow thinker (``LocalSlowThinker`` on that fork: ``build_thinking_inputs(context=None)``
then greedy decoding) writes the answer; the main context then continues with the plain
``header answer<eos>``, as the engine commits it. Keyframes follow the engine's rule
(``select_keyframes``): the trigger frame plus novel frames among the last ``history_frames``,
by the fast-path feature (mean fused frame token) of the teacher-forced context's frames.

Teacher-forced LM metrics of a thought turn (``answer_branch``) score the answer tokens after the
template: the template's last token predicts the first answer token, ..., the last predicts EOS.
With the slow path off the positions are VideoLLM-online's (the assistant header's tokens after
its first are scored too), so LM-PPL / LM-Correctness on vs. off differ also by those few
header tokens, which the template makes fixed input.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from lionfs_ros.engine.config import EngineConfig
from lionfs_ros.engine.context import ContextFork
from lionfs_ros.engine.keyframes import HistoryFrame, select_keyframes
from lionfs_ros.engine.lm_state import DynamicLMState
from lionfs_ros.engine.slow_thinker import LocalSlowThinker, SlowThinkRequest
from lionfs_ros.model.configuration_lionfs import KeyframeConfig
from lionfs_ros.model.thinking_template import build_thinking_inputs

ON, OFF = "on", "off"
ENGINE_MODE = "all"  # the engine thinks before every answer, questions and proactive narrations alike

AnswerBranch = Callable[[int], tuple[torch.Tensor, torch.Tensor]]
"""``start`` (where the assistant turn's header begins) -> ``(logits [m, V], targets [m])`` of its answer after the template."""


@dataclass(frozen=True)
class SlowPath:
    mode: str  # "answers" | "all": which turns think
    keyframes: KeyframeConfig

    def thinks_narrations(self) -> bool:
        return self.mode == ENGINE_MODE

    def describe(self) -> dict:
        return {"enabled": True, "mode": self.mode, "keyframes": dataclasses.asdict(self.keyframes)}


def slow_path_for(model, setting: str | None) -> SlowPath | None:
    """``setting`` on / off / None (on when the model was trained with thinking). Modes and keyframes:
    the model's training ones; a model trained without thinking gets the engine's (``all``)."""
    trained = model.config.thinking
    enabled = trained.mode != "none" if setting is None else setting == ON
    if setting not in (None, ON, OFF):
        raise ValueError(f"slow path must be {ON!r} or {OFF!r}, got {setting!r}")
    if not enabled:
        return None
    return SlowPath(trained.mode if trained.mode != "none" else ENGINE_MODE, trained.keyframes)


def describe(slow: SlowPath | None, model) -> dict:
    base = {"trained_mode": model.config.thinking.mode}
    return {**base, **(slow.describe() if slow is not None else {"enabled": False})}


@dataclass
class ClipFrames:
    """What the slow path needs of a clip: its frames at the general encoder's size and their fast-path features."""

    pixels: np.ndarray  # uint8 [T, S, S, 3]
    features: torch.Tensor  # [T, d]: mean of each frame's fused tokens

    @classmethod
    def of(cls, pixels: np.ndarray, frame_embeds: torch.Tensor) -> "ClipFrames":
        return cls(pixels, frame_embeds.float().mean(dim=1).cpu())

    def keyframes(self, trigger: int, config: KeyframeConfig) -> list[tuple[np.ndarray, float]]:
        """The engine's keyframes for a turn right after frame ``trigger``: ``(rgb, frame index)``, oldest first."""
        first = max(0, trigger + 1 - config.history_frames)
        history = [HistoryFrame(self.pixels[i], float(i), self.features[i]) for i in range(first, trigger + 1)]
        return [(h.rgb, h.time) for h in select_keyframes(history, config)]


def frames_before(model, input_ids: torch.Tensor, end: int) -> int:
    return int((input_ids[:end] == model.token_ids.placeholder).sum()) // model.tokens_per_frame


def slow_answer(model, cache, after_stream: bool, clip: ClipFrames | None, trigger: int, slow: SlowPath | None,
                max_new_tokens: int, query: str | None = None) -> str:
    """The engine's slow thinker on a fork of ``cache`` (the context up to the turn): the answer text.

    ``slow`` None: the plain assistant header (no template, so no keyframe pixels are read). ``query``: the
    question answered (restated after the template for a model trained with ``thinking.question: after``)."""
    think = slow is not None
    config = EngineConfig(slow_path="on" if think else "off", max_new_tokens=max_new_tokens,
                          **({"keyframes": slow.keyframes} if think else {}))
    keyframes = clip.keyframes(trigger, slow.keyframes) if think else [(None, float(trigger))]
    request = SlowThinkRequest(keyframes=keyframes, context=[], query=query, max_new_tokens=max_new_tokens,
                               fork=ContextFork(DynamicLMState(model, cache.fork()), after_stream))
    return LocalSlowThinker(model, config).generate(request, lambda text, tokens: None).text


def answer_branch(model, input_ids: torch.Tensor, clip: ClipFrames, slow: SlowPath) -> Callable[[object], AnswerBranch]:
    """Teacher-forced answers after the template: bound to the full-sequence cache by ``stream_evaluate``."""
    fmt = model.formatter
    placeholder, eos = model.token_ids.placeholder, model.token_ids.eos

    def bind(cache) -> AnswerBranch:
        @torch.no_grad()
        def branch(start: int) -> tuple[torch.Tensor, torch.Tensor]:
            after_stream = bool(input_ids[start - 1] == placeholder)
            stop = start + int((input_ids[start:] == eos).nonzero()[0, 0]) + 1
            body = input_ids[start + len(fmt.assistant_header_ids(after_stream)):stop].tolist()
            trigger = frames_before(model, input_ids, start) - 1
            rgbs = [rgb for rgb, _ in clip.keyframes(trigger, slow.keyframes)]
            inputs = build_thinking_inputs(model, rgbs, after_stream=after_stream, config=slow.keyframes)
            template = inputs.input_ids.tolist()
            ids = torch.tensor(template + body[:-1])[None]  # [1, t + m - 1]
            mask = torch.zeros_like(ids, dtype=torch.bool)
            mask[0, : len(template)] = inputs.input_ids == placeholder
            embeds, visual = model.joint_embed(ids, None, mask, inputs.embeds)
            out = model.step(embeds, visual, cache.trim(start))
            return out.logits[0, len(template) - 1:], torch.tensor(body, device=out.logits.device)

        return branch

    return bind
