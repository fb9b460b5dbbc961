"""Runs slow-thinker jobs one at a time, on its own thread or inline, and streams their updates.

The worker never touches the main context: it gets a request (with a fork of the context, or
portable fields only), calls the slow thinker, emits ``ResponseUpdate``s, and hands the outcome
back through ``outcomes`` (the engine's fast thread commits it). A thinker that raises gives a
final update with ``error`` set; the worker carries on with the next job.
"""
from __future__ import annotations

import queue
import threading
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Callable

from .slow_thinker import SlowThinker, SlowThinkRequest, SlowThinkResult
from .timing import now
from .triggers import Job
from .types import ResponseUpdate

_STOP = object()


@dataclass
class Outcome:
    job: Job
    request: SlowThinkRequest
    result: SlowThinkResult | None
    error: str | None

    @property
    def committable(self) -> bool:
        kept_empty = self.result is not None and self.result.keep_empty  # stream.commit 'generated' keeps empty answers
        return self.result is not None and not self.result.cancelled and (bool(self.result.text) or kept_empty)


class SlowWorker:
    def __init__(self, thinker: SlowThinker, emit: Callable[[ResponseUpdate], None], on_done: Callable[[], None]):
        self.thinker = thinker
        self.emit = emit
        self.on_done = on_done  # wakes the engine's fast loop
        self.outcomes: deque[Outcome] = deque()
        self.errors = 0
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    # Threaded use.
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lionfs-slow", daemon=True)
        self._thread.start()

    def submit(self, job: Job, request: SlowThinkRequest) -> None:
        self._jobs.put((job, request))

    def stop(self, timeout: float) -> None:
        if self._thread is not None:
            self._jobs.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is _STOP:
                return
            self.outcomes.append(self.run(*item))
            self.on_done()

    # One job (worker thread, or the caller's thread when the engine runs inline).
    def run(self, job: Job, request: SlowThinkRequest) -> Outcome:
        started = now()
        sequence = iter(range(1 << 62))

        def update(text: str, tokens: int, final: bool, **extra) -> ResponseUpdate:
            return ResponseUpdate(
                turn_index=job.turn_index, text=text, is_final=final, sequence=next(sequence),
                trigger_meta=job.meta, trigger_time=job.frame_time, trigger_score=job.score, query=job.query,
                query_id=job.query_id, num_tokens=tokens, decision_latency_s=job.decision_latency_s,
                generation_latency_s=now() - started, **extra)

        try:
            result = self.thinker.generate(request, lambda text, tokens: self.emit(update(text, tokens, False)))
        except Exception as err:  # a thinker may fail in any way (remote down, OOM); the stream goes on
            self.errors += 1
            message = f"{type(err).__name__}: {err}"
            detail = traceback.format_exc(limit=4)
            self.emit(update("", 0, True, error=message))
            return Outcome(job, request, None, message + "\n" + detail)
        result.cancelled = result.cancelled or job.cancel.is_set()
        self.emit(update(
            result.text, result.num_tokens, True, time_to_first_token_s=result.time_to_first_token,
            regions=[r.as_tuple() for r in result.regions], truncated=result.truncated, cancelled=result.cancelled))
        return Outcome(job, request, result, None)
