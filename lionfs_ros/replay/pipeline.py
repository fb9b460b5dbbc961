"""`lionfs replay`: a bag through the assistant, scored against its truth, written as a report.

bag -> frames (decoded, timed) -> a runner (deterministic engine, live node, or the responses
already recorded in the bag) -> responses -> matched to the truth -> report.json + report.html.
A bag with user questions (`replay.questions`) has them asked (deterministic mode) and, with their true
answers, scored as QA; proactive responses alone are matched to the narrations.
A bag that stops being readable part-way still gets a report of what was read, marked partial.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Protocol

from lionfs_ros.replay.bag_frames import BagFrame, FrameStats, iter_frames
from lionfs_ros.replay.bag_reader import NS_PER_S, BagReader, BagReadError
from lionfs_ros.eval.matching import MatchWindow, match_triggers
from lionfs_ros.replay.questions import qa_metrics, read_questions, read_true_answers
from lionfs_ros.replay.records import RunOutput
from lionfs_ros.replay.report_json import ReplayReport
from lionfs_ros.eval.stats import summarize
from lionfs_ros.eval.text_scores import score_corpus, score_pair
from lionfs_ros.replay.thumbnails import ThumbnailRing
from lionfs_ros.replay.truth import DEFAULT_TRUTH_TOPIC, STRING_TYPE, TruthError, TruthTimeline, load_truth_file, truth_from_topic

# A response this close to a frame's stamp belongs to that frame (stamps survive a float round trip).
STAMP_MATCH_S = 1e-6
DEFAULT_TOLERANCE_S = 1.0
EXIT_OK, EXIT_PARTIAL, EXIT_UNUSABLE = 0, 1, 2


@dataclass
class ReplaySettings:
    bag: Path
    report_dir: Path
    mode: str = "deterministic"  # deterministic | live | recorded
    image_topic: str | None = None
    truth_file: Path | None = None
    truth_topic: str | None = None  # None: DEFAULT_TRUTH_TOPIC when the bag has it
    truth_video: str | None = None
    tolerance_s: float = DEFAULT_TOLERANCE_S
    rate: float = 1.0
    params_file: Path | None = None  # a lionfs_node params file, applied in both modes
    model: str | None = None  # None: the params file's or the node's default (the bundled demo model)
    device: str | None = None
    dtype: str | None = None
    threshold: float | None = None  # None: the params file's or the node's default
    progress: bool = True
    live: dict = field(default_factory=dict)  # live-mode options, see live_replay.LiveOptions

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


class FrameLog:
    """Frames as they pass: clock stamp -> frame index, and keyframe thumbnails."""

    def __init__(self, stats: FrameStats):
        self.stats = stats
        self.thumbnails = ThumbnailRing()
        self._by_stamp: dict[int, int] = {}
        self._log_times: list[float] = []

    def add(self, frame: BagFrame) -> None:
        self._by_stamp[round(frame.stamp_s * NS_PER_S)] = frame.index
        self._log_times.append(frame.log_time_s)
        self.thumbnails.add(frame.index, frame.rgb)

    def index_of(self, stamp_s: float) -> int | None:
        key = round(stamp_s * NS_PER_S)
        for candidate in (key, key - 1, key + 1):  # float rounding of the stamp
            if candidate in self._by_stamp:
                index = self._by_stamp[candidate]
                self.thumbnails.claim(index)
                return index
        return None

    def log_time(self, stamp_s: float) -> float | None:
        """When the recorder received the frame stamped `stamp_s`."""
        index = self.index_of(stamp_s)
        return None if index is None else self._log_times[index]

    def video_time(self, stamp_s: float) -> float:
        return self.stats.video_time(stamp_s)


class ResponseRunner(Protocol):
    mode: str

    def prepare(self, image_msgtype: str, has_truth: bool) -> None:
        """Load the model / start the node (before the progress bar starts)."""

    def stream_metrics(self, truth: TruthTimeline | None, frame_stats: FrameStats) -> dict | None:
        """Teacher-forced metrics when this mode can compute them, else None."""

    def run(self, frames: Iterator[BagFrame], log: FrameLog, bag: BagReader, questions=()) -> RunOutput:
        """Feed `frames` (call `log.add` on each), ask `questions` (the bag's `BagQuestion`s) where the mode can, and
        return what the assistant produced."""


@dataclass
class ReplayOutcome:
    report: ReplayReport
    thumbnails: dict[int, str]
    exit_code: int
    error: str | None


def _guarded(frames: Iterator[BagFrame], log: FrameLog, failure: list[BagReadError], progress) -> Iterator[BagFrame]:
    """Frames until the bag ends or breaks; a break is kept in `failure` so the run can finish cleanly."""
    try:
        for frame in frames:
            log.add(frame)
            if progress is not None:
                progress.update(1)
            yield frame
    except BagReadError as err:
        failure.append(err)


def _read_topic_truth(bag: BagReader, topic: str) -> list[tuple[float, str]]:
    return [(m.log_time_ns / NS_PER_S, str(m.message.data)) for m in bag.messages([topic])]


def run_replay(settings: ReplaySettings, runner_factory: Callable[[ReplaySettings], ResponseRunner],
               progress_factory=None) -> ReplayOutcome:
    """Everything but the command line. Raises BagReadError / TruthError for unusable input."""
    truth_file = load_truth_file(settings.truth_file, settings.truth_video, settings.bag.name) \
        if settings.truth_file else None
    runner = runner_factory(settings)  # settings errors before any reading
    with BagReader(settings.bag) as bag:
        image = bag.image_topic(settings.image_topic)
        truth_topic = settings.truth_topic
        if truth_topic is None and truth_file is None and bag.summary.topic(DEFAULT_TRUTH_TOPIC):
            truth_topic = DEFAULT_TRUTH_TOPIC
        topic_truth = []
        if truth_topic and not truth_file:
            found = bag.summary.topic(truth_topic)
            if found is None or found.msgtype != STRING_TYPE:
                raise TruthError(f"{settings.bag}: truth topic {truth_topic!r} is "
                                 f"{'missing' if found is None else found.msgtype}; it must be {STRING_TYPE}")
            topic_truth = _read_topic_truth(bag, truth_topic)
        questions, question_notes = read_questions(bag)
        answers = read_true_answers(bag) if questions else []
        runner.prepare(image.msgtype, has_truth=bool(truth_file or truth_topic))
        stats = FrameStats()
        log = FrameLog(stats)
        failure: list[BagReadError] = []
        progress = progress_factory(image.count) if progress_factory else None
        started = time.monotonic()
        try:
            output = runner.run(_guarded(iter_frames(bag, image.name, stats), log, failure, progress), log, bag,
                                questions)
        finally:
            if progress is not None:
                progress.close()
        output.wall_time_s = output.wall_time_s or time.monotonic() - started
        output.notes.extend(question_notes)
        summary = bag.summary
    truth = truth_file
    if truth is None and truth_topic:
        truth = truth_from_topic(topic_truth, truth_topic, stats.origin_s or 0.0, stats.origin_log_s or 0.0)
    if truth is not None:
        output.stream_metrics = runner.stream_metrics(truth, stats) or \
            {"skipped": f"teacher-forced metrics need the model in this process: deterministic mode, not {output.mode}"}
    damage = summary.damage or (failure[0].detail if failure else None)
    status = {"complete": damage is None, "error": f"bag damaged: {damage}" if damage else None}
    report = build_report(settings, summary.to_dict(), image.name, stats, truth, output, status, answers)
    thumbnails = {}
    for response in output.responses:
        uri = log.thumbnails.uri(response.frame_index)
        if uri is not None:
            thumbnails[response.frame_index] = uri
    return ReplayOutcome(report, thumbnails, EXIT_OK if damage is None else EXIT_PARTIAL, status["error"])


def unreadable_bag_report(settings: ReplaySettings, error: BagReadError) -> ReplayReport:
    """The report of a bag that could not be read at all: no numbers, the reason, so pipelines always get a file."""
    bag = {"path": str(settings.bag), "storage": "unknown", "message_count": 0, "start_s": None, "end_s": None,
           "damage": error.detail, "topics": []}
    status = {"complete": False, "error": f"bag unreadable: {error.detail}"}
    return build_report(settings, bag, None, FrameStats(), None, RunOutput(mode=settings.mode, model=""), status)


def build_report(settings: ReplaySettings, bag: dict, image_topic: str | None, stats: FrameStats,
                 truth: TruthTimeline | None, output: RunOutput, status: dict,
                 answers: list[dict] | None = None) -> ReplayReport:
    """``answers``: the bag's true answers to its questions (``replay.questions``), scored as ``metrics["qa"]``."""
    responses = [r.to_dict() for r in output.responses]
    proactive = [i for i, r in enumerate(output.responses) if not (r.query or r.query_id)]  # answers are QA's
    metrics: dict = {}
    if truth is not None:
        window = MatchWindow(settings.tolerance_s, settings.tolerance_s)
        triggers = match_triggers([output.responses[i].trigger_time for i in proactive], truth.times, window)
        triggers.pairs = [replace(pair, response_index=proactive[pair.response_index])  # the report's index
                          for pair in triggers.pairs]
        metrics["triggers"] = triggers.to_dict()
        hypotheses, references = [], []
        for pair in triggers.pairs:
            response, event = responses[pair.response_index], truth.events[pair.truth_index]
            response["truth_index"], response["delta_s"] = pair.truth_index, pair.delta_s
            response["truth_text"] = event.text
            response["text_score"] = asdict(score_pair(response["text"], event.text))
            hypotheses.append(response["text"])
            references.append(event.text)
        metrics["text"] = score_corpus(hypotheses, references).to_dict()
    else:
        metrics["triggers"] = metrics["text"] = None
    metrics["qa"] = qa_metrics(responses, answers) if answers else None
    metrics["stream"] = output.stream_metrics
    metrics["latency"] = {
        "end_to_end": summarize([r.latency_s for r in output.responses]).to_dict(),
        "first_message": summarize([r.first_latency_s for r in output.responses]).to_dict(),
        "decision": summarize(output.frame_decision_latencies_s
                              or [r.decision_latency_s for r in output.responses]).to_dict(),
        "generation": summarize([r.generation_latency_s for r in output.responses]).to_dict(),
    }
    metrics["frames"] = {**output.frames.to_dict(), "rejected": sum(stats.rejected.values())}
    metrics["memory"] = output.memory.to_dict()
    video_s = (stats.last_s - stats.origin_s) if stats.decoded else 0.0
    metrics["timing"] = {"wall_s": output.wall_time_s, "video_s": video_s,
                         "realtime_factor": video_s / output.wall_time_s if output.wall_time_s else None}
    return ReplayReport(
        mode=output.mode, model=output.model, bag=bag, image_topic=image_topic, settings=settings.to_dict(),
        frames=stats.to_dict(), truth=truth.to_dict() if truth else None, responses=responses, metrics=metrics,
        status=status, notes=list(output.notes) + (truth.notes if truth else []))
