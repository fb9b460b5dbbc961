"""Ground truth: what should have been said, and when, in video time (seconds from the first frame).

Two sources:
- a narration topic in the bag (std_msgs/String). The synthetic world's JSON `{"time", "text",
  "kind"}` gives `time` on the camera clock (header stamps), like the frames; a plain string,
  or JSON without `time`, is placed at its log time relative to the first frame's log time.
- a sidecar JSON file, times already in video time, in any of these shapes:
  videollm-online's narration stream `{video_uid: {annotation_uid: [{"time", "text"}]}}`,
  the synthetic world's episode file (`{"episode_id", "narrations": [...]}`), or a plain list
  `[{"time", "text"}]`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_TRUTH_TOPIC = "/lionfs/ground_truth"
STRING_TYPE = "std_msgs/msg/String"


class TruthError(ValueError):
    """The ground truth cannot be read; the message names the file or topic and what is wrong."""


@dataclass(frozen=True)
class TruthEvent:
    time: float  # video time, seconds
    text: str
    kind: str | None = None  # the synthetic world's tag (quick / detail / normal) when known


@dataclass
class TruthTimeline:
    events: list[TruthEvent]
    source: str  # where it came from, for the report
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events = sorted(self.events, key=lambda e: e.time)

    @property
    def times(self) -> list[float]:
        return [e.time for e in self.events]

    def to_dict(self) -> dict:
        return {"source": self.source, "notes": self.notes, "events": [asdict(e) for e in self.events]}


def truth_from_topic(messages: list[tuple[float, str]], topic: str, origin_s: float, origin_log_s: float) -> TruthTimeline:
    """`messages`: (log time s, String data) in bag order; origins: the first frame's clock and log time."""
    events = []
    for log_s, data in messages:
        record = _json_object(data)
        if record is not None and isinstance(record.get("time"), (int, float)) and record.get("text"):
            events.append(TruthEvent(float(record["time"]) - origin_s, str(record["text"]), record.get("kind")))
        elif record is not None and record.get("text"):
            events.append(TruthEvent(log_s - origin_log_s, str(record["text"]), record.get("kind")))
        elif data.strip():
            events.append(TruthEvent(log_s - origin_log_s, data.strip()))
    return TruthTimeline(events, f"topic {topic}")


def _json_object(data: str) -> dict | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def load_truth_file(path: Path, video_uid: str | None = None, bag_name: str | None = None) -> TruthTimeline:
    """Read a sidecar truth file; `video_uid` (else the bag's name) picks the video in a multi-video file."""
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TruthError(f"{path}: truth file not found") from None
    except ValueError as err:
        raise TruthError(f"{path}: not valid JSON: {err}") from None
    if isinstance(document, list):
        return TruthTimeline(_events(document, path), f"file {path}")
    if isinstance(document, dict) and isinstance(document.get("narrations"), list):
        uid = document.get("episode_id") or document.get("video_uid")
        return TruthTimeline(_events(document["narrations"], path), f"file {path}" + (f" (video {uid})" if uid else ""))
    if isinstance(document, dict) and document:
        return _from_narration_stream(document, path, video_uid, bag_name)
    raise TruthError(f"{path}: expected a narration stream, an episode file or a list of {{time, text}}")


def _from_narration_stream(document: dict, path: Path, video_uid: str | None, bag_name: str | None) -> TruthTimeline:
    if video_uid is not None:
        if video_uid not in document:
            raise TruthError(f"{path}: no video {video_uid!r}; it has {_few(document)}")
        uid = video_uid
    elif bag_name in document:
        uid = bag_name
    elif len(document) == 1:
        uid = next(iter(document))
    else:
        raise TruthError(f"{path}: {len(document)} videos and none is named like the bag ({bag_name!r}); "
                         f"choose one with --truth-video: {_few(document)}")
    annotations = document[uid]
    if not isinstance(annotations, dict) or not annotations:
        raise TruthError(f"{path}: video {uid!r}: expected {{annotation_uid: [{{time, text}}]}}")
    annotation_uid, narrations = next(iter(annotations.items()))
    notes = []
    if len(annotations) > 1:
        notes.append(f"video {uid} has {len(annotations)} annotation passes; used the first, {annotation_uid}")
    return TruthTimeline(_events(narrations, path), f"file {path} (video {uid})", notes)


def _events(items: list, path: Path) -> list[TruthEvent]:
    events = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("time"), (int, float)) or not item.get("text"):
            raise TruthError(f"{path}: narration {i} needs a numeric 'time' and a 'text', got {item!r:.120}")
        events.append(TruthEvent(float(item["time"]), str(item["text"]), item.get("kind")))
    return events


def _few(document: dict, limit: int = 5) -> str:
    names = list(document)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
