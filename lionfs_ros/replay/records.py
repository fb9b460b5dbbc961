"""What a run of the assistant over a bag produced, whichever way it ran (engine, live node, recorded)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class ResponseRecord:
    """One response turn: the final text (or the last partial if no final came) and its timing."""

    turn_index: int
    trigger_time: float  # video time (s) of the frame that triggered it
    text: str
    is_final: bool
    frame_index: int | None = None  # the triggering frame among the decoded frames (keyframe thumbnail)
    score: float | None = None  # trigger score, 1 - P(frame-interval token)
    num_tokens: int | None = None
    query: str = ""  # the question it answers; empty for proactive narration
    query_id: str = ""  # the question's id (the bag's UserQuery.query_id when replay asked it)
    latency_s: float | None = None  # end to end: triggering frame in -> final text out
    first_latency_s: float | None = None  # triggering frame in -> first words out
    decision_latency_s: float | None = None  # as reported by the assistant
    generation_latency_s: float | None = None
    messages: int = 1  # partial and final messages seen for this turn
    # The slow thinker's keyframe regions (normalized x0, y0, x1, y1 + what each is), when it used any.
    regions: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FrameCounts:
    """Frames along the way: in the bag -> handed to the assistant -> decided on."""

    fed: int = 0  # published (live) or passed to the engine (deterministic)
    received: int | None = None  # the node's own count of frames that arrived (live, from /diagnostics)
    processed: int | None = None  # frames the fast thinker decided on, when the assistant says
    dropped_transport: int | None = None  # fed - received: lost between player and node
    dropped_engine: int | None = None  # received but skipped by the engine (overload, newest wins)

    @property
    def dropped_total(self) -> int | None:
        parts = [p for p in (self.dropped_transport, self.dropped_engine) if p is not None]
        return sum(parts) if parts else None

    def to_dict(self) -> dict:
        return {**asdict(self), "dropped_total": self.dropped_total}


@dataclass
class MemoryPeak:
    rss_mib: float | None = None  # peak resident memory of the process that ran the model
    gpu_mib: float | None = None  # peak GPU memory allocated by torch, when on a GPU
    process: str = ""  # which process was measured

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunOutput:
    mode: str  # deterministic | live | recorded
    model: str  # model directory or a description
    responses: list[ResponseRecord] = field(default_factory=list)
    frame_decision_latencies_s: list[float] = field(default_factory=list)  # fast path per frame, when known
    frames: FrameCounts = field(default_factory=FrameCounts)
    memory: MemoryPeak = field(default_factory=MemoryPeak)
    assistant_stats: dict = field(default_factory=dict)  # the engine's or node's own counters
    stream_metrics: dict | None = None  # teacher-forced metrics (deterministic mode with truth)
    wall_time_s: float = 0.0
    notes: list[str] = field(default_factory=list)
