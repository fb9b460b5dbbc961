"""StreamEngine: the online LION-FS assistant, ROS-free.

Threads (after ``start``):
- the caller's threads: ``push_frame`` / ``ask`` check their input and return at once;
- the fast thread: takes frames from the bounded queue (newest wins), routes each by the rate
  grids (general: decide; ego: ego window only; else skip), steps the LLM on the main context,
  decides, calls ``on_decision``, hands triggers to the scheduler, starts jobs on a *fork* of the
  context, commits finished answers (in time order, after the newest frame) and applies the KV
  budget. It is the only writer of the main context;
- the slow thread: writes one answer at a time on its fork and calls ``on_response``.

Without ``start`` the engine is synchronous: ``process_frame`` decides a frame on the caller's
thread and writes any answer inline, before returning, right after the triggering frame (the
layout training uses), which makes replays deterministic.
"""
from __future__ import annotations

import itertools
import threading
import uuid
from collections import Counter, deque
from typing import Any, Callable

import numpy as np
import torch

from .bounds import token_bounds
from .config import EngineConfig, check_against_model
from .context import StreamContext
from .fast_thinker import FrameEncoder, decide
from .frame_queue import FrameQueue, QueuedFrame
from .frames import check_frame, check_question
from .keyframes import HistoryFrame, select_keyframes
from .lm_state import DynamicLMState, LMState
from .rates import EGO, GENERAL, SKIP, RateGate
from .slow_thinker import LocalSlowThinker, SlowThinker, SlowThinkRequest
from .slow_worker import Outcome, SlowWorker
from .timing import LatencyWindow, now
from .triggers import Job, TriggerScheduler
from .types import RESPOND, SILENT, SKIPPED, Decision, FrameError, ResponseUpdate

QUEUE_POLL_S = 0.05  # the fast thread's longest wait before it re-checks for stop
STOP_TIMEOUT_S = 10.0
QUESTION_SCORE = 1.0


class StreamEngine:
    def __init__(self, model, config: EngineConfig | None = None, slow_thinker: SlowThinker | None = None, *,
                 backend=None):
        """``backend``: an ``EngineBackend`` (``cuda_graphs.StaticBackend``); None picks by ``config.backend``."""
        self.model = model.eval()
        self.cfg = (config or EngineConfig()).validate().for_model(model)
        self.threshold = model.config.stream.interval_threshold if self.cfg.threshold is None else self.cfg.threshold
        self.backend = backend if backend is not None else _pick_backend(model, self.cfg)
        self._check_model()
        self.encoder = FrameEncoder(model, *self.backend.towers())
        self.context = StreamContext(
            model, self.backend.main_state(), budget=self.cfg.kv_budget_tokens, chunk=self.cfg.evict_chunk_tokens,
            keep_recent_frames=self.cfg.keep_recent_frames, reindex=self.cfg.position_mode == "reindex",
            max_query_tokens=self.cfg.max_query_tokens, system_prompt=self.cfg.system_prompt)
        self.slow_thinker = slow_thinker or LocalSlowThinker(model, self.cfg, new_state=self.backend.fresh_state)
        ego_fps = self.cfg.ego_fps
        if ego_fps is None and self.encoder.has_ego:
            ego_fps = self.cfg.general_fps * self.encoder.window
        self.gate = RateGate(self.cfg.general_fps, ego_fps if self.encoder.has_ego else None, self.cfg.rate_tolerance)
        self.queue = FrameQueue(self.cfg.frame_queue_size)
        self.history: deque[HistoryFrame] = deque(maxlen=self.cfg.keyframes.history_frames)
        self.scheduler = TriggerScheduler(self.cfg.trigger_policy, self.cfg.max_pending_triggers,
                                          self.cfg.max_pending_questions)
        self.worker = SlowWorker(self.slow_thinker, self._emit, self.queue.wake)
        self.on_decision: Callable[[Decision], Any] | None = None
        self.on_response: Callable[[ResponseUpdate], Any] | None = None
        self._lock = threading.Lock()  # inputs and counters shared with the callers' threads
        self._questions: list[tuple[float, int, str, str]] = []  # (time, order, text, id), answered by time
        self._question_order = itertools.count()
        self._last_push: float | None = None
        self._last_decided: float | None = None
        self._turns = itertools.count()
        self._counts: Counter = Counter()
        self._rejected: Counter = Counter()
        self._latency = LatencyWindow(self.cfg.latency_window)
        self._compute = LatencyWindow(self.cfg.latency_window)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_error = ""

    def _check_model(self) -> None:
        check_against_model(self.cfg, token_bounds(self.model, self.cfg),
                            getattr(self.model.llm.config, "max_position_embeddings", None))

    # Inputs (any thread).
    def push_frame(self, rgb: np.ndarray, t: float, meta: Any = None) -> None:
        """Queue a frame for the fast thread; never blocks. Raises ``FrameError`` for a bad frame."""
        arrival = now()
        with self._lock:
            rgb, t = self._accept(rgb, t)
        self.queue.put(QueuedFrame(rgb, t, meta, arrival))

    def _accept(self, rgb, t):
        self._counts["frames_in"] += 1
        try:
            rgb, t = check_frame(rgb, t, self._last_push)
        except FrameError as err:
            self._rejected[err.reason] += 1
            raise
        self._last_push = t
        return rgb, t

    def ask(self, text: str, t: float, query_id: str | None = None) -> str:
        """Queue a question; it is answered at the first decided frame at or after ``t``. Returns its id."""
        try:
            text, t = check_question(text, t)
        except FrameError as err:
            with self._lock:
                self._rejected[err.reason] += 1
            raise
        query_id = query_id or uuid.uuid4().hex[:12]
        with self._lock:
            self._questions.append((t, next(self._question_order), text, query_id))
            self._questions.sort()
        return query_id

    def set_threshold(self, value: float | None) -> None:
        """The speaking threshold from now on (None: the model's calibrated ``interval_threshold``)."""
        if value is None:
            self.threshold = self.model.config.stream.interval_threshold
            return
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {value}")
        self.threshold = float(value)

    def set_trigger_policy(self, policy: str) -> None:
        self.scheduler.set_policy(policy)

    # Synchronous use.
    def process_frame(self, rgb: np.ndarray, t: float, meta: Any = None) -> Decision | None:
        """Decide one frame now (answers written inline). None for a frame that only feeds the ego encoder or is skipped."""
        if self._thread is not None:
            raise RuntimeError("process_frame is for a stopped engine; a started engine takes push_frame")
        arrival = now()
        with self._lock:
            rgb, t = self._accept(rgb, t)
        decision = self._handle(QueuedFrame(rgb, t, meta, arrival))
        self._run_jobs_inline()
        return decision

    def flush(self) -> None:
        """Synchronous use: write every answer still waiting for the slow thinker (questions wait for a frame)."""
        self._run_jobs_inline()

    # Threads.
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.worker.start()
        self._thread = threading.Thread(target=self._fast_loop, name="lionfs-fast", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self.queue.wake()
        self._thread.join(STOP_TIMEOUT_S)
        self._thread = None
        for job in self.scheduler.drain():
            self._emit_cancelled(job)
        self.worker.stop(STOP_TIMEOUT_S)
        self._commit_outcomes()

    def _fast_loop(self) -> None:
        while not self._stop.is_set():
            item = self.queue.get(QUEUE_POLL_S)
            self._commit_outcomes()
            if item is not None:
                try:
                    self._handle(item)
                except Exception as err:  # one bad step must not end the stream; it is counted and visible in stats
                    self._counts["frame_errors"] += 1
                    self._last_error = f"{type(err).__name__}: {err}"
            self._start_next_job()

    # The fast path.
    @torch.no_grad()
    def _handle(self, item: QueuedFrame) -> Decision | None:
        route = self.gate.classify(item.time)
        if route == SKIP:
            self._counts["skipped"] += 1
            return None
        if route == EGO:
            self.encoder.add_ego(item.rgb)
            self._counts["ego_frames"] += 1
            return None
        assert route == GENERAL
        started = now()
        embeds = self.encoder.encode(item.rgb)  # [n, d]
        logits = self.context.feed_frame(embeds, item.time)
        p_interval, respond, top = decide(self.model, logits, self.threshold)
        self.history.append(HistoryFrame(item.rgb, item.time, embeds.float().mean(0).cpu()))
        decision = Decision(
            frame_time=item.time, meta=item.meta, score=1.0 - p_interval, respond=respond, p_interval=p_interval,
            latency_s=0.0, compute_s=0.0, frame_index=self._counts["decided"], next_token=top,
            action=RESPOND if respond else SILENT)
        self._counts["decided"] += 1
        self._last_decided = item.time
        question = self._due_question(item.time + self._question_lookahead) if self.cfg.answers else None
        job = None
        if question is not None:
            job = self._accept_question(decision, question)
        elif respond and self.cfg.answers:
            job = self._accept_trigger(decision)
        self.context.evict_if_needed()
        decision.kv_tokens = self.context.num_tokens
        decision.compute_s = now() - started
        decision.latency_s = now() - item.arrival
        if job is not None:
            job.decision_latency_s = decision.latency_s
        self._latency.add(decision.latency_s)
        self._compute.add(decision.compute_s)
        self._call(self.on_decision, decision)
        if self._thread is not None:
            self._start_next_job()
        return decision

    @property
    def _question_lookahead(self) -> float:
        """``stream.question_timing: before_next_frame``: a question before the next frame's time is due now."""
        return 1.0 / self.cfg.general_fps if self.model.config.stream.question_timing == "before_next_frame" else 0.0

    def _due_question(self, t: float):
        with self._lock:
            if self._questions and (self._questions[0][0] < t if self._question_lookahead else self._questions[0][0] <= t):
                return self._questions.pop(0)
        return None

    def _new_job(self, decision: Decision, score: float, context, query=None, query_id=None) -> Job:
        return Job(turn_index=-1, frame_time=decision.frame_time, meta=decision.meta, score=score,
                   decision_latency_s=0.0, keyframes=[], context=context, query=query, query_id=query_id)

    def _admit(self, job: Job, decision: Decision) -> None:
        """An accepted job gets its turn number and its keyframes (chosen now, from the frames seen so far)."""
        job.turn_index = decision.turn_index = next(self._turns)
        job.keyframes = select_keyframes(self.history, self.cfg.keyframes)

    def _accept_question(self, decision: Decision, question) -> Job:
        _, _, text, query_id = question
        text = self.context.cut_query(text)
        context = self.context.portable_dialogue(self.cfg.context_turns)
        self.context.feed_user(text, decision.frame_time)
        job = self._new_job(decision, QUESTION_SCORE, context, text, query_id)
        self._admit(job, decision)
        action, dropped = self.scheduler.offer_question(job)
        decision.respond, decision.action, decision.query, decision.query_id = True, action, text, query_id
        self._counts["questions"] += 1
        self._finish_jobs(dropped, "dropped: too many questions waiting")
        return job

    def _accept_trigger(self, decision: Decision) -> Job | None:
        job = self._new_job(decision, decision.score, self.context.portable_dialogue(self.cfg.context_turns))
        action, dropped = self.scheduler.offer_trigger(job)
        decision.action = action
        self._finish_jobs(dropped, "dropped: too many triggers waiting")
        if action == SKIPPED:
            return None
        self._admit(job, decision)
        return job

    # Jobs.
    def _request(self, job: Job) -> SlowThinkRequest:
        return SlowThinkRequest(
            keyframes=[(h.rgb, h.time) for h in job.keyframes], context=job.context, query=job.query,
            max_new_tokens=self.cfg.max_new_tokens, turn_index=job.turn_index,
            fork=self.context.fork() if isinstance(self.slow_thinker, LocalSlowThinker) else None, cancel=job.cancel)

    def _start_next_job(self) -> None:
        job = self.scheduler.next_job()
        if job is not None:
            self._counts["turns"] += 1
            self.worker.submit(job, self._request(job))

    def _run_jobs_inline(self) -> None:
        while (job := self.scheduler.next_job()) is not None:
            self._counts["turns"] += 1
            self.worker.outcomes.append(self.worker.run(job, self._request(job)))
            self._commit_outcomes()

    def _commit_outcomes(self) -> None:
        while self.worker.outcomes:
            outcome: Outcome = self.worker.outcomes.popleft()
            if outcome.request.fork is not None:
                outcome.request.fork.state.release()
            if outcome.committable:
                self.context.feed_answer(outcome.result.text, self._last_decided or outcome.job.frame_time,
                                         outcome.result.token_ids, outcome.result.truncated)
                self._counts["answers"] += 1
                self.context.evict_if_needed()
            elif outcome.error is not None:
                self._counts["slow_errors"] += 1
            elif outcome.result is not None and outcome.result.cancelled:
                self._counts["cancelled"] += 1
            self.scheduler.finished(outcome.job)

    def _finish_jobs(self, jobs: list[Job], why: str) -> None:
        for job in jobs:
            self._emit_cancelled(job, why)

    def _emit_cancelled(self, job: Job, why: str = "cancelled: the engine stopped") -> None:
        self._emit(ResponseUpdate(
            turn_index=job.turn_index, text="", is_final=True, sequence=0, trigger_meta=job.meta,
            trigger_time=job.frame_time, trigger_score=job.score, query=job.query, query_id=job.query_id,
            num_tokens=0, decision_latency_s=job.decision_latency_s, generation_latency_s=0.0, cancelled=True,
            error=why))

    # Callbacks.
    def _emit(self, update: ResponseUpdate) -> None:
        self._call(self.on_response, update)

    def _call(self, fn, arg) -> None:
        if fn is None:
            return
        try:
            fn(arg)
        except Exception:  # a consumer's bug must not stop the engine
            self._counts["callback_errors"] += 1

    # Introspection.
    def stats(self) -> dict:
        with self._lock:
            counts, rejected, pending_questions = dict(self._counts), dict(self._rejected), len(self._questions)
        sched, ev = self.scheduler, self.context.eviction
        out = {
            "frames_in": counts.get("frames_in", 0), "decided": counts.get("decided", 0),
            "ego_frames": counts.get("ego_frames", 0), "skipped": counts.get("skipped", 0),
            "dropped": self.queue.dropped, "queue_depth": len(self.queue), "queue_high_water": self.queue.high_water,
            "rejected": sum(rejected.values()),
            "latency_p50_ms": self._latency.percentile_ms(50), "latency_p99_ms": self._latency.percentile_ms(99),
            "compute_p50_ms": self._compute.percentile_ms(50), "compute_p99_ms": self._compute.percentile_ms(99),
            "kv_tokens": self.context.num_tokens, "kv_bytes": self.context.state.nbytes(),
            "next_position": self.context.state.next_position, "compactions": ev.compactions,
            "evicted_tokens": ev.evicted_tokens, "evicted_frames": ev.evicted_frames, "evicted_text": ev.evicted_text,
            "turns": counts.get("turns", 0), "answers": counts.get("answers", 0),
            "questions": counts.get("questions", 0), "questions_pending": pending_questions,
            "truncated_questions": self.context.truncated_queries,
            "triggers_skipped": sched.counts.skipped, "triggers_queued": sched.counts.queued,
            "triggers_replaced": sched.counts.replaced, "triggers_dropped": sched.counts.dropped_triggers,
            "questions_dropped": sched.counts.dropped_questions, "cancelled": counts.get("cancelled", 0),
            "busy": sched.running is not None, "jobs_waiting": len(sched.questions) + len(sched.triggers),
            "slow_errors": counts.get("slow_errors", 0),
            "frame_errors": counts.get("frame_errors", 0), "last_frame_error": self._last_error,
            "callback_errors": counts.get("callback_errors", 0),
            "threshold": self.threshold, "trigger_policy": sched.policy, "running": self._thread is not None,
            "backend": self.backend.name,
        }
        out.update({f"rejected_{reason}": count for reason, count in rejected.items()})
        return out


class DynamicBackend:
    """Any model, CPU or GPU: the model's own modules over ``StreamKVCache``s."""

    name = "dynamic"

    def __init__(self, model):
        self.model = model

    def towers(self):
        return None, None

    def main_state(self) -> LMState:
        return DynamicLMState(self.model)

    def fresh_state(self) -> LMState:
        return DynamicLMState(self.model)


def _pick_backend(model, cfg: EngineConfig):
    wants_static = cfg.backend == "static" or (cfg.backend == "auto" and model.device.type == "cuda")
    if wants_static:
        from .cuda_graphs import StaticBackend, static_backend_supported

        reason = static_backend_supported(model)
        if reason is None:
            return StaticBackend(model, cfg)
        if cfg.backend == "static":
            raise ValueError(f"backend='static' is not possible for this model: {reason}")
    return DynamicBackend(model)
