"""What the engine hands out: decisions, streamed responses, regions; and its input errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lionfs_ros.model.regions import Region  # noqa: F401  (what the engine hands out with an answer)

# Decision.action values.
SILENT = "silent"  # P(interval) says stay quiet
RESPOND = "respond"  # a response starts at this frame
ANSWER = "answer"  # a user question is answered at this frame
SKIPPED = "skipped"  # wanted to respond, but the slow thinker is busy and the policy is 'skip'
QUEUED = "queued"  # wanted to respond; waits for the slow thinker ('queue', or a question)
REPLACED = "replaced"  # wanted to respond; cancelled the running answer ('replace')


class FrameError(ValueError):
    """A frame or question the engine refuses; ``reason`` is a short key for counters."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Decision:
    """The fast thinker's verdict on one decided frame."""

    frame_time: float
    meta: Any
    score: float  # 1 - P(interval)
    respond: bool  # the model (or a question) wants a response here
    p_interval: float
    latency_s: float  # frame arrival -> decision (queue wait included)
    compute_s: float  # this frame's own processing time
    frame_index: int  # decided frames so far, from 0
    next_token: int = -1  # the most likely next token (the interval token means silence)
    action: str = SILENT
    query: str | None = None
    query_id: str | None = None
    turn_index: int | None = None  # set when a response was started or queued for this frame
    kv_tokens: int = 0


@dataclass
class ResponseUpdate:
    """One streamed update of a response: partials (full text so far), then exactly one final."""

    turn_index: int
    text: str
    is_final: bool
    sequence: int
    trigger_meta: Any
    trigger_time: float
    trigger_score: float  # 1 - P(interval) of the triggering frame; 1.0 for a question
    query: str | None
    query_id: str | None
    num_tokens: int
    decision_latency_s: float
    generation_latency_s: float  # slow job start -> this update
    time_to_first_token_s: float | None = None
    regions: list[tuple[float, float, float, float, str, float]] = field(default_factory=list)
    truncated: bool = False  # stopped at max_new_tokens rather than end-of-sequence
    cancelled: bool = False  # replaced by a newer trigger, or the engine stopped; not committed
    error: str | None = None  # the slow thinker failed; not committed
