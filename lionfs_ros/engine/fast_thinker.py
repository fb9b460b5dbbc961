"""The fast path in one home: ``FastThinker.step(frame) -> FastStep`` (decision, and a job to answer).

Per frame: the rate gate routes it (general: decide; ego: ego window only; else skip); a decided
frame is encoded (``FrameEncoder``: general tower + egocentric window, fused; or its fused tokens
given precomputed, as ``lionfs eval`` does), fed to the main context, decided by the model's one
rule (``model.stream_decision``) and kept in the keyframe history; a question due at that frame or
a proactive trigger becomes a ``Job`` offered to the trigger scheduler; then the KV budget applies.
Threads, queues, callbacks, answer commits and stats are ``engine.py``'s.

``FrameEncoder`` keeps the last ``ego.frames_per_frame`` egocentric tokens (the ego window ends at
the decided frame: a decided frame is always an ego frame too). At the start of a stream, before
the window is full, its oldest entry is repeated. The towers (RGB -> frame tokens) and the fusion
(tower tokens -> fused tokens) can be swapped for faster runners of the same functions (CUDA graphs,
see ``graphed_frame.py``).
"""
from __future__ import annotations

import itertools
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from lionfs_ros.model.modeling_lionfs import stream_decision

from .config import EngineConfig
from .context import StreamContext
from .keyframes import HistoryFrame, select_keyframes
from .rates import EGO, GENERAL, SKIP, RateGate
from . import static_decoder
from .timing import now
from .triggers import Job, TriggerScheduler
from .types import RESPOND, SILENT, SKIPPED, Decision

log = logging.getLogger(__name__)
TowerTokens = tuple  # (general [1, n, C] or None, ego [1, n, C'] or None): one frame's tower outputs
TokensFn = Callable[[np.ndarray], torch.Tensor]
"""RGB ``[H, W, 3]`` uint8 -> frame tokens ``[1, n, C]`` (preprocess, then the encoder's ``frame_tokens``)."""


def tower_tokens(model, source: str) -> TokensFn:
    encoder = model.vision if source == "general" else model.ego
    return lambda rgb: encoder.frame_tokens(model.preprocess(rgb, source))


FuseFn = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]
"""(general tokens ``[1, n, C]``, ego window ``[r, n, C']`` or None) -> fused tokens ``[n, d]`` (``embed_frames``)."""


def embed_frame(model) -> FuseFn:
    return lambda general, ego=None: model.embed_frames(general, ego)[0]


class FrameEncoder:
    def __init__(self, model, general_tokens: TokensFn | None = None, ego_tokens: TokensFn | None = None,
                 fuse: FuseFn | None = None):
        """``fuse``: a faster runner of ``model.embed_frames`` for one frame (``graphed_frame.GraphedFusion``)."""
        if model.config.ego.source == "features":
            raise ValueError(
                "ego.source='features' needs precomputed egocentric features per frame, which a live stream does not"
                " have: the online engine encodes frames with towers (use ego.source='tower' or 'none')")
        self.model = model
        self.general_tokens = general_tokens or tower_tokens(model, "general")
        self.has_ego = model.ego is not None
        self.ego_tokens = ego_tokens or (tower_tokens(model, "ego") if self.has_ego else None)
        self.fuse = fuse or embed_frame(model)
        self.window = model.config.ego.frames_per_frame if self.has_ego else 0
        self._ego: deque[torch.Tensor] = deque(maxlen=max(self.window, 1))  # each [1, n, C']
        self.warmed: set[tuple[int, ...]] = set()  # frame shapes [H, W, 3] run through ``warm``
        self._unwarmed: set[tuple[int, ...]] = set()  # other shapes seen (each logged once)

    @torch.no_grad()
    def warm(self, height: int, width: int) -> None:
        """Run a black ``height x width`` frame through the towers and the fusion, keeping nothing (the ego window
        is untouched): what the towers make per frame size (graphed towers: the resize's plan, its compiled passes
        and their check, the resize, tower and fusion graphs) is made now instead of at the first such frame."""
        black = np.zeros((height, width, 3), dtype=np.uint8)
        if self.has_ego:
            general, ego = self.both_towers(black)  # [1, n, C], [1, n, C']
            self.fuse(general, torch.cat([ego] * self.window))  # a full window's shape: [r, n, C']
        else:
            self.fuse(self.general_tokens(black), None)
        self.warmed.add(black.shape)

    def _note_size(self, rgb: np.ndarray | None) -> None:
        """Log once per frame size that ``warm`` did not see (when it saw some): that frame pays the warm-up."""
        if not self.warmed or rgb is None or rgb.shape in self.warmed or rgb.shape in self._unwarmed:
            return
        self._unwarmed.add(rgb.shape)
        warmed = ", ".join(f"{w}x{h}" for h, w, _ in sorted(self.warmed))
        log.info("frame size %dx%d was not warmed up (camera_size: %s): its first frame compiles and captures its"
                 " resize", rgb.shape[1], rgb.shape[0], warmed)

    @torch.no_grad()
    def add_ego(self, rgb: np.ndarray, tokens: torch.Tensor | None = None) -> None:
        """``tokens [1, n, C']``: this frame's ego tokens computed beforehand (a batch across streams)."""
        if self.has_ego:
            if tokens is None:
                self._note_size(rgb)
            self._ego.append(self.ego_tokens(rgb) if tokens is None else tokens)

    def ego_window(self) -> torch.Tensor:
        """``[r, n, C']``: the last r ego tokens, oldest first, the oldest repeated while fewer exist."""
        held = list(self._ego)
        return torch.cat([held[0]] * (self.window - len(held)) + held)

    @torch.no_grad()
    def encode(self, rgb: np.ndarray, towers: "TowerTokens | None" = None) -> torch.Tensor:
        """A decided frame -> fused tokens ``[n, d]`` (it also enters the ego window).

        ``towers``: its (general ``[1, n, C]``, ego ``[1, n, C']``) tokens computed beforehand (None: computed here)."""
        general_given, ego_given = towers or (None, None)
        if general_given is None:
            self._note_size(rgb)
        if self.has_ego and general_given is None and ego_given is None:
            general_given, ego_given = self.both_towers(rgb)
        general = self.general_tokens(rgb) if general_given is None else general_given  # [1, n, C]
        if not self.has_ego:
            return self.fuse(general, None)
        self.add_ego(rgb, ego_given)
        return self.fuse(general, self.ego_window())

    @torch.no_grad()
    def both_towers(self, rgb: np.ndarray) -> TowerTokens:
        """(general ``[1, n, C]``, ego ``[1, n, C']``) tokens of one frame; graphed towers upload it once (``pair``)."""
        pair = getattr(self.general_tokens, "pair", None)
        if pair is not None:
            return pair(self.ego_tokens, rgb)
        return self.general_tokens(rgb), self.ego_tokens(rgb)

    def reset(self) -> None:
        self._ego.clear()


QUESTION_SCORE = 1.0


@dataclass
class PendingFrame:
    """A decided frame encoded and waiting for its LLM step (``FastThinker.prepare`` -> ``finish``)."""

    rgb: np.ndarray | None
    time: float
    meta: Any
    embeds: torch.Tensor  # [n, d] fused tokens
    started: float

Question = tuple[float, int, str, str]
"""(time, order, text, query id): a question waiting for its frame."""


@dataclass
class FastStep:
    """What one frame gave: its decision (None: ego-only or skipped), the job it started, the jobs it pushed out."""

    decision: Decision | None = None
    job: Job | None = None
    dropped: list[tuple[Job, str]] = field(default_factory=list)  # (job, why): each gets a cancelled final


class FastThinker:
    """Owns the encoder, the rate gate, the decision rule and the keyframe history of one stream.

    ``context`` (the main context) and ``scheduler`` are shared with the engine, which commits
    answers to the one and finishes jobs on the other; ``next_question(t)`` pops the question due
    at a decided frame at ``t`` (None if none)."""

    def __init__(self, model, cfg: EngineConfig, context: StreamContext, scheduler: TriggerScheduler,
                 next_question: Callable[[float], Question | None], towers: tuple = (None, None),
                 fuse: FuseFn | None = None):
        self.model, self.cfg, self.context, self.scheduler = model, cfg, context, scheduler
        self.next_question = next_question
        self.threshold = model.config.stream.interval_threshold if cfg.threshold is None else cfg.threshold
        self.encoder = FrameEncoder(model, *towers, fuse=fuse)
        self.gate = self._new_gate()
        self.history: deque[HistoryFrame] = deque(maxlen=cfg.keyframes.history_frames)
        # None: decisions by the Triton kernel (the engine's kernels on CUDA), else why the model's rule runs
        self.decision_fallback = ("the engine's Triton kernels are off (attention != 'triton')"
                                  if cfg.attention != "triton" else static_decoder.attention_problem(model.device))
        self._decision_kernel = None
        if self.decision_fallback is None:
            from .kernels.stream_decision import stream_decision_row

            self._decision_kernel = stream_decision_row
        self._decision_workspace: dict = {}  # the decision kernel's buffers, reused (each result is read back first)
        self.counts: Counter = Counter()  # decided, ego_frames, skipped, questions
        self.last_decided: float | None = None
        self._turns = itertools.count()

    def _new_gate(self) -> RateGate:
        ego_fps = self.cfg.ego_fps
        if ego_fps is None and self.encoder.has_ego:
            ego_fps = self.cfg.general_fps * self.encoder.window
        return RateGate(self.cfg.general_fps, ego_fps if self.encoder.has_ego else None, self.cfg.rate_tolerance)

    def reset_clock(self) -> None:
        """The camera's clock restarted: rate grids re-anchor at the next frame; the keyframe history
        (frames on the old clock) is forgotten. The model's context is kept."""
        self.gate = self._new_gate()
        self.history.clear()

    def set_threshold(self, value: float | None) -> None:
        """The speaking threshold from now on (None: the model's calibrated ``interval_threshold``)."""
        if value is None:
            self.threshold = self.model.config.stream.interval_threshold
            return
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {value}")
        self.threshold = float(value)

    def decide(self, logits: torch.Tensor) -> tuple[float, bool, int]:
        """Last-placeholder logits ``[V]`` -> (P(interval), respond, most likely token), one device sync. With the
        engine's Triton kernels on CUDA, the rule runs as one kernel (``kernels/stream_decision.py``); where that
        fails, the model's ``stream_decision`` from then on (``decision_fallback`` says why)."""
        interval = self.model.token_ids.interval
        if self.decision_fallback is None:
            try:
                p_interval, respond, top = self._decision_kernel(logits, interval, self.threshold,
                                                                 self._decision_workspace).tolist()
                return p_interval, bool(respond), int(top)
            except Exception as err:  # noqa: BLE001 - a GPU or Triton build that cannot run it: the plain rule
                self.decision_fallback = f"the decision kernel failed: {type(err).__name__}: {err}"
                log.warning("%s; the model's rule decides from now on", self.decision_fallback)
        p_interval, respond, top = stream_decision(logits, interval, self.threshold)
        p_interval, respond, top = torch.stack([p_interval, respond.float(), top.float()]).tolist()
        return p_interval, bool(respond), int(top)

    @torch.no_grad()
    def step(self, rgb: np.ndarray | None, t: float, meta: Any = None, embeds: torch.Tensor | None = None,
             route: str | None = None, towers: TowerTokens | None = None) -> FastStep:
        """One checked frame. ``embeds [n, d]``: its fused tokens, computed beforehand (the towers are skipped).

        ``route``/``towers``: the gate's route for ``t`` (already taken with ``gate.classify``) and this
        frame's tower tokens, computed in a batch across streams (``multi_stream.py``)."""
        prepared = self.prepare(rgb, t, meta, embeds, route, towers)
        return prepared if isinstance(prepared, FastStep) else self.finish(prepared)

    @torch.no_grad()
    def prepare(self, rgb: np.ndarray | None, t: float, meta: Any = None, embeds: torch.Tensor | None = None,
                route: str | None = None, towers: TowerTokens | None = None) -> "FastStep | PendingFrame":
        """``step`` up to the LLM: a finished ``FastStep`` (ego-only or skipped), or a decided frame's fused tokens."""
        route = self.gate.classify(t) if route is None else route
        if route == SKIP:
            self.counts["skipped"] += 1
            return FastStep()
        if route == EGO:
            if embeds is None:
                self.encoder.add_ego(rgb, None if towers is None else towers[1])
            self.counts["ego_frames"] += 1
            return FastStep()
        assert route == GENERAL
        started = now()
        if embeds is None:  # a single stream calls encode(rgb) as before; a group passes its batched tower tokens
            embeds = self.encoder.encode(rgb) if towers is None else self.encoder.encode(rgb, towers)
        else:
            embeds = embeds.to(self.model.device, self.model.dtype)
        return PendingFrame(rgb, t, meta, embeds, started)

    @torch.no_grad()
    def finish(self, frame: "PendingFrame", fed: tuple[int, torch.Tensor] | None = None) -> FastStep:
        """``step`` from the LLM on. ``fed``: (start position, last logits ``[V]``) when a batched step across
        streams already fed the frame's plain piece (``context.plain_frame_ids``) to this context's state."""
        rgb, t, meta, embeds, started = frame.rgb, frame.time, frame.meta, frame.embeds, frame.started
        feature = embeds.float().mean(0)  # [d] the keyframe history's; queued before the step, not launched after it
        if fed is None:  # decided on the step's stream, queued behind it: one wait, no launches after it
            p_interval, respond, top = self.context.feed_frame(embeds, t, readout=self.decide)
        else:
            start, logits = fed
            self.context.frame_fed(start, self.context.state.next_position - start, t)
            p_interval, respond, top = self.decide(logits)
        self.history.append(HistoryFrame(rgb, t, feature))  # stays on the device: no sync per frame
        decision = Decision(
            frame_time=t, meta=meta, score=1.0 - p_interval, respond=respond, p_interval=p_interval,
            latency_s=0.0, compute_s=0.0, frame_index=self.counts["decided"], next_token=top,
            action=RESPOND if respond else SILENT)
        self.counts["decided"] += 1
        self.last_decided = t
        out = FastStep(decision)
        question = self.next_question(t) if self.cfg.answers else None
        if question is not None:
            out.job = self._accept_question(decision, question, out)
        elif respond and self.cfg.answers:
            out.job = self._accept_trigger(decision, out)
        self.context.evict_if_needed()
        decision.kv_tokens = self.context.num_tokens
        decision.compute_s = now() - started
        return out

    def _new_job(self, decision: Decision, score: float, context, query=None, query_id=None) -> Job:
        return Job(turn_index=-1, frame_time=decision.frame_time, meta=decision.meta, score=score,
                   decision_latency_s=0.0, keyframes=[], context=context, query=query, query_id=query_id)

    def _admit(self, job: Job, decision: Decision) -> None:
        """An accepted job gets its turn number and its keyframes (chosen now, from the frames seen so far)."""
        job.turn_index = decision.turn_index = next(self._turns)
        job.keyframes = select_keyframes(self.history, self.cfg.keyframes)

    def _accept_question(self, decision: Decision, question: Question, out: FastStep) -> Job:
        _, _, text, query_id = question
        text = self.context.cut_query(text)
        context = self.context.portable_dialogue(self.cfg.context_turns)
        self.context.feed_user(text, decision.frame_time)
        job = self._new_job(decision, QUESTION_SCORE, context, text, query_id)
        self._admit(job, decision)
        action, dropped = self.scheduler.offer_question(job)
        decision.respond, decision.action, decision.query, decision.query_id = True, action, text, query_id
        self.counts["questions"] += 1
        out.dropped += [(j, "dropped: too many questions waiting") for j in dropped]
        return job

    def _accept_trigger(self, decision: Decision, out: FastStep) -> Job | None:
        job = self._new_job(decision, decision.score, self.context.portable_dialogue(self.cfg.context_turns))
        action, dropped = self.scheduler.offer_trigger(job)
        decision.action = action
        out.dropped += [(j, "dropped: too many triggers waiting") for j in dropped]
        if action == SKIPPED:
            return None
        self._admit(job, decision)
        return job
