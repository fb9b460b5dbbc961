"""Who gets the slow thinker: one answer is written at a time; the policy says what a new trigger does.

Policies for a *proactive* trigger (the fast thinker wants to speak) while an answer is being
written (or waits to be):
- ``skip``: the trigger is dropped (counted). The default: the model keeps wanting to speak about
  the event it is already answering, and the answer, once committed, tells it that it spoke.
- ``queue``: it waits, at most ``max_pending_triggers`` of them (the oldest waiting one is dropped
  beyond); each starts when the slow thinker is free, on the context as it is then.
- ``replace``: the running proactive answer is cancelled (not committed) and the new trigger takes
  its place; a waiting proactive trigger is replaced too. An answer to a question is never cancelled
  by a proactive trigger: the new trigger waits instead (one at most).

Questions are never skipped: they wait (at most ``max_pending_questions``, oldest dropped beyond)
and go before any waiting proactive trigger. Under ``replace`` a question also cancels a running
proactive answer. Pure bookkeeping: the engine starts, runs and finishes jobs.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .config import TRIGGER_POLICIES
from .types import ANSWER, QUEUED, REPLACED, RESPOND, SKIPPED


@dataclass
class Job:
    """A response to write: a proactive trigger or a question, with what it was decided on."""

    turn_index: int
    frame_time: float
    meta: Any
    score: float  # the trigger's score (1.0 for a question)
    decision_latency_s: float
    keyframes: list  # HistoryFrame, oldest first; the last is the triggering frame
    context: list[tuple[str, str]]  # portable dialogue before this turn
    query: str | None = None
    query_id: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def is_question(self) -> bool:
        return self.query is not None


@dataclass
class TriggerCounts:
    skipped: int = 0
    queued: int = 0
    replaced: int = 0
    dropped_triggers: int = 0
    dropped_questions: int = 0


class TriggerScheduler:
    def __init__(self, policy: str, max_pending_triggers: int, max_pending_questions: int):
        self.set_policy(policy)
        self.running: Job | None = None
        self.triggers: deque[Job] = deque()
        self.questions: deque[Job] = deque()
        self.max_triggers, self.max_questions = max_pending_triggers, max_pending_questions
        self.counts = TriggerCounts()

    def set_policy(self, policy: str) -> None:
        if policy not in TRIGGER_POLICIES:
            raise ValueError(f"trigger policy {policy!r} is not one of {TRIGGER_POLICIES}")
        self.policy = policy

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.triggers) or bool(self.questions)

    def offer_trigger(self, job: Job) -> tuple[str, list[Job]]:
        """(action, jobs dropped from the waiting list)."""
        if not self.busy:
            self.triggers.append(job)
            return RESPOND, []
        if self.policy == "skip":
            self.counts.skipped += 1
            return SKIPPED, []
        if self.policy == "replace":
            dropped = list(self.triggers)
            self.triggers.clear()
            self.triggers.append(job)
            if self.running is not None and not self.running.is_question:
                self.running.cancel.set()
                self.counts.replaced += 1
                return REPLACED, dropped
            self.counts.queued += 1
            return QUEUED, dropped
        self.triggers.append(job)
        self.counts.queued += 1
        dropped = []
        while len(self.triggers) > self.max_triggers:
            dropped.append(self.triggers.popleft())
            self.counts.dropped_triggers += 1
        return QUEUED, dropped

    def offer_question(self, job: Job) -> tuple[str, list[Job]]:
        idle = not self.busy
        self.questions.append(job)
        dropped = []
        while len(self.questions) > self.max_questions:
            dropped.append(self.questions.popleft())
            self.counts.dropped_questions += 1
        if idle:
            return ANSWER, dropped
        if self.policy == "replace" and self.running is not None and not self.running.is_question:
            self.running.cancel.set()
            self.counts.replaced += 1
        return QUEUED, dropped

    def next_job(self) -> Job | None:
        """The job to start now (questions first), or None while one runs or none waits."""
        if self.running is not None:
            return None
        if self.questions:
            self.running = self.questions.popleft()
        elif self.triggers:
            self.running = self.triggers.popleft()
        return self.running

    def finished(self, job: Job) -> None:
        if job is self.running:
            self.running = None

    def drain(self) -> list[Job]:
        """Every waiting job (the engine stops); the running one is cancelled."""
        if self.running is not None:
            self.running.cancel.set()
        waiting = list(self.questions) + list(self.triggers)
        self.questions.clear()
        self.triggers.clear()
        return waiting
