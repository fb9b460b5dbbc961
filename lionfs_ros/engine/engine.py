"""StreamEngine: the online LION-FS assistant, ROS-free.

Threads (after ``start``):
- the caller's threads: ``push_frame`` / ``ask`` check their input and return at once;
- the fast thread: takes frames from the bounded queue (newest wins), routes each by the rate
  grids (general: decide; ego: ego window only; else skip), steps the LLM on the main context,
  decides, calls ``on_decision``, hands triggers to the scheduler, starts jobs on a *fork* of the
  context, commits finished answers (in time order, after the newest frame) and applies the KV
  budget. It is the only writer of the main context;
- the slow thread: writes one answer at a time on its fork and calls ``on_response``.

The per-frame work (rate gate, encoder, decision rule, keyframe history, questions and triggers
becoming jobs) is ``FastThinker``'s (``fast_thinker.py``); this module keeps threads, the queue,
callbacks, answer commits and stats.

Without ``start`` the engine is synchronous: ``process_frame`` decides a frame on the caller's
thread and writes any answer inline, before returning, right after the triggering frame (the
layout training uses), which makes replays deterministic. It also takes a frame's fused tokens
computed beforehand (``embeds``): ``lionfs eval`` embeds each clip once, in a batch, and runs the
rest of this same loop.
"""
from __future__ import annotations

import itertools
import math
import threading
import uuid
from collections import Counter
from typing import Any, Callable

import numpy as np
import torch

from .backends import pick_backend
from .bounds import token_bounds
from .config import EngineConfig, check_against_model
from .context import StreamContext
from .fast_thinker import FastStep, FastThinker, PendingFrame
from .frame_queue import FrameQueue, QueuedFrame
from .frames import check_frame, check_question
from .slow_thinker import LocalSlowThinker, SlowThinker, SlowThinkRequest
from .slow_worker import Outcome, SlowWorker
from .timing import LatencyWindow, now
from .triggers import Job, TriggerScheduler
from .types import Decision, FrameError, ResponseUpdate

QUEUE_POLL_S = 0.05  # the fast thread's longest wait before it re-checks for stop
STOP_TIMEOUT_S = 10.0


class StreamEngine:
    def __init__(self, model, config: EngineConfig | None = None, slow_thinker: SlowThinker | None = None, *,
                 backend=None):
        """``backend``: an ``EngineBackend`` (``cuda_graphs.StaticBackend``); None picks by ``config.backend``."""
        self.model = model.eval()
        self.cfg = (config or EngineConfig()).validate().for_model(model)
        self.backend = backend if backend is not None else pick_backend(model, self.cfg)
        self._check_model()
        self.context = StreamContext(
            model, self.backend.main_state(), budget=self.cfg.kv_budget_tokens, chunk=self.cfg.evict_chunk_tokens,
            keep_recent_frames=self.cfg.keep_recent_frames, reindex=self.cfg.position_mode == "reindex",
            max_query_tokens=self.cfg.max_query_tokens, system_prompt=self.cfg.system_prompt)
        self.slow_thinker = slow_thinker or LocalSlowThinker(model, self.cfg, new_state=self.backend.fresh_state)
        self.queue = FrameQueue(self.cfg.frame_queue_size)
        self.scheduler = TriggerScheduler(self.cfg.trigger_policy, self.cfg.max_pending_triggers,
                                          self.cfg.max_pending_questions)
        fusion = getattr(self.backend, "fusion", None)  # a backend without one: the model's embed_frames
        self.fast = FastThinker(model, self.cfg, self.context, self.scheduler, self._due_question,
                                self.backend.towers(), fusion() if fusion else None)
        if self.cfg.camera_size is not None:  # what the first frame of this size would make, made now
            width, height = self.cfg.camera_size
            self.fast.encoder.warm(height, width)
        self.worker = SlowWorker(self.slow_thinker, self._emit, self.queue.wake)
        self.on_decision: Callable[[Decision], Any] | None = None
        self.on_response: Callable[[ResponseUpdate], Any] | None = None
        self._lock = threading.Lock()  # inputs and counters shared with the callers' threads
        self._questions: list[tuple[float, int, str, str]] = []  # (time, order, text, id), answered by time
        self._question_order = itertools.count()
        self._last_push: float | None = None
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
        self.queue.put(self.accept_frame(rgb, t, meta))

    def accept_frame(self, rgb, t, meta: Any = None, pixels_optional: bool = False) -> QueuedFrame:
        """Check and count an incoming frame (any thread); raises ``FrameError`` for a bad one."""
        arrival = now()
        with self._lock:
            self._counts["frames_in"] += 1
            try:
                rgb, t = check_frame(rgb, t, self._last_push, pixels_optional)
            except FrameError as err:
                self._rejected[err.reason] += 1
                raise
            self._last_push = t
        return QueuedFrame(rgb, t, meta, arrival)

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

    @property
    def threshold(self) -> float:
        return self.fast.threshold

    @property
    def encoder(self):
        return self.fast.encoder

    def reset_stream(self) -> int:
        """The camera's clock jumped back (or restarted): accept the next frame whatever its time.

        Drops frames still waiting (they carry the old clock), re-anchors the rate grids and the
        keyframe history on the new clock, and moves waiting questions to the next decided frame.
        The model's context (what it has seen and said) is kept. Returns the frames dropped.
        """
        with self._lock:
            self._last_push = None
            self._questions = [(-math.inf, order, text, query_id) for _, order, text, query_id in self._questions]
            self.fast.reset_clock()
            self._counts["stream_resets"] += 1
        return self.queue.clear()

    def drop_question(self, query_id: str) -> bool:
        """Withdraw a question still waiting for a frame (e.g. the camera stalled); False if it was taken."""
        with self._lock:
            kept = [q for q in self._questions if q[3] != query_id]
            dropped = len(kept) != len(self._questions)
            self._questions = kept
            if dropped:
                self._counts["questions_dropped_waiting"] += 1
        return dropped

    def set_threshold(self, value: float | None) -> None:
        """The speaking threshold from now on (None: the model's calibrated ``interval_threshold``)."""
        self.fast.set_threshold(value)

    def set_trigger_policy(self, policy: str) -> None:
        self.scheduler.set_policy(policy)

    # Synchronous use.
    def process_frame(self, rgb: np.ndarray | None, t: float, meta: Any = None,
                      embeds: torch.Tensor | None = None) -> Decision | None:
        """Decide one frame now (answers written inline). None for a frame that only feeds the ego encoder or is skipped.

        ``embeds [n, d]``: the frame's fused tokens computed beforehand (``lionfs eval`` embeds a clip in
        one batch); the towers are skipped and ``rgb`` (then optional) only serves the slow thinker's keyframes."""
        if self._thread is not None:
            raise RuntimeError("process_frame is for a stopped engine; a started engine takes push_frame")
        decision = self._handle(self.accept_frame(rgb, t, meta, pixels_optional=embeds is not None), embeds)
        self.run_jobs_inline()
        return decision

    def flush(self) -> None:
        """Synchronous use: write every answer still waiting for the slow thinker (questions wait for a frame)."""
        self.run_jobs_inline()

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
        self.cancel_waiting_jobs()
        self.worker.stop(STOP_TIMEOUT_S)
        self.commit_outcomes()

    def _fast_loop(self) -> None:
        while not self._stop.is_set():
            item = self.queue.get(QUEUE_POLL_S)
            self.commit_outcomes()
            if item is not None:
                try:
                    self._handle(item)
                except Exception as err:  # one bad step must not end the stream; it is counted and visible in stats
                    self.frame_failed(err)
            self.start_next_job()

    # Driven by a ``StreamGroup`` (several streams, one fast thread, one slow thread, LLM steps batched).
    def attach(self, queue: FrameQueue, worker: SlowWorker) -> None:
        """Take frames from ``queue`` and run answers on ``worker`` (a group's), in place of this engine's own."""
        self.queue, self.worker = queue, worker

    def set_driver(self, thread: threading.Thread | None) -> None:
        """Another object's thread (a group's) runs this engine's fast path now (None: stopped)."""
        self._thread = thread

    def frame_failed(self, err: Exception) -> None:
        """Count a frame whose step raised (the stream carries on)."""
        self._counts["frame_errors"] += 1
        self._last_error = f"{type(err).__name__}: {err}"

    def cancel_waiting_jobs(self) -> None:
        for job in self.scheduler.drain():
            self._emit_cancelled(job)

    def route(self, t: float) -> str:
        """The rate gate's route for a frame at ``t`` (general, ego or skip); taken once per frame."""
        return self.fast.gate.classify(t)

    def begin_frame(self, item: QueuedFrame, route: str | None = None, towers=None,
                    embeds: torch.Tensor | None = None) -> FastStep | PendingFrame:
        """The fast path up to the LLM step (``FastThinker.prepare``); ``end_frame`` does the rest."""
        return self.fast.prepare(item.rgb, item.time, item.meta, embeds, route, towers)

    def plain_frame_state(self):
        """The LM state the next decided frame's plain piece goes to, if that frame may join a batched step
        (``StreamContext.plain_frame_ids``); else None."""
        return self.context.state if self.context.plain_frame_ids() is not None else None

    # The fast path (``FastThinker``), then what the engine does with its outcome.
    def _handle(self, item: QueuedFrame, embeds: torch.Tensor | None = None) -> Decision | None:
        return self.end_frame(item, self.begin_frame(item, embeds=embeds))

    def end_frame(self, item: QueuedFrame, prepared: FastStep | PendingFrame,
                  fed: tuple[int, torch.Tensor] | None = None) -> Decision | None:
        """The fast path from the LLM step on. ``fed``: (start, logits) of the frame's piece fed by a batched step."""
        step = prepared if isinstance(prepared, FastStep) else self.fast.finish(prepared, fed)
        for job, why in step.dropped:
            self._emit_cancelled(job, why)
        decision = step.decision
        if decision is None:
            return None
        decision.latency_s = now() - item.arrival
        if step.job is not None:
            step.job.decision_latency_s = decision.latency_s
        self._latency.add(decision.latency_s)
        self._compute.add(decision.compute_s)
        self._call(self.on_decision, decision)
        if self._thread is not None:
            self.start_next_job()
        return decision

    @property
    def _question_lookahead(self) -> float:
        """``stream.question_timing: before_next_frame``: a question before the next frame's time is due now."""
        return 1.0 / self.cfg.general_fps if self.model.config.stream.question_timing == "before_next_frame" else 0.0

    def _due_question(self, t: float):
        """The question due at a decided frame at ``t`` (with ``before_next_frame`` timing: asked before the next one)."""
        lookahead = self._question_lookahead
        with self._lock:
            if self._questions and (self._questions[0][0] < t + lookahead if lookahead else self._questions[0][0] <= t):
                return self._questions.pop(0)
        return None

    # Jobs.
    def _request(self, job: Job) -> SlowThinkRequest:
        return SlowThinkRequest(
            keyframes=[(h.rgb, h.time) for h in job.keyframes], context=job.context, query=job.query,
            max_new_tokens=self.cfg.max_new_tokens, turn_index=job.turn_index,
            fork=self.context.fork() if isinstance(self.slow_thinker, LocalSlowThinker) else None, cancel=job.cancel)

    def start_next_job(self) -> None:
        job = self.scheduler.next_job()
        if job is not None:
            self._counts["turns"] += 1
            self.worker.submit(job, self._request(job))

    def run_jobs_inline(self) -> None:
        """Synchronous use: write every answer that can start now, on this thread."""
        while (job := self.scheduler.next_job()) is not None:
            self._counts["turns"] += 1
            self.worker.outcomes.append(self.worker.run(job, self._request(job)))
            self.commit_outcomes()

    def commit_outcomes(self) -> None:
        """Commit finished answers to the main context (the fast path's thread only)."""
        while self.worker.outcomes:
            outcome: Outcome = self.worker.outcomes.popleft()
            if outcome.request.fork is not None:
                outcome.request.fork.state.release()
            if outcome.committable:
                self.context.feed_answer(outcome.result.text, self.fast.last_decided or outcome.job.frame_time,
                                         outcome.result.token_ids, outcome.result.truncated)
                self._counts["answers"] += 1
                self.context.evict_if_needed()
            elif outcome.error is not None:
                self._counts["slow_errors"] += 1
            elif outcome.result is not None and outcome.result.cancelled:
                self._counts["cancelled"] += 1
            self.scheduler.finished(outcome.job)

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
        counts.update(self.fast.counts)
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
            "callback_errors": counts.get("callback_errors", 0), "stream_resets": counts.get("stream_resets", 0),
            "threshold": self.threshold, "trigger_policy": sched.policy, "running": self._thread is not None,
            "backend": self.backend.name,
        }
        out.update({f"rejected_{reason}": count for reason, count in rejected.items()})
        return out
