"""Typed records of one episode, shared by the generator, the storage layer and the reader."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

TIME_DECIMALS = 6  # seconds are frame / fps; rounding keeps JSON stable for fps like 3


def frame_time(frame: int, fps: int) -> float:
    return round(frame / fps, TIME_DECIMALS)


@dataclass(frozen=True)
class Narration:
    """Said when an action completes: the assistant's proactive response."""
    time: float
    text: str
    kind: str  # "normal" | "quick" | "detail": the LION-FS mechanism it exercises
    action_index: int
    object_ids: tuple[str, ...]
    heldout: bool = False


@dataclass(frozen=True)
class Question:
    """A user query at `time`, answered at the same time (as in videollm-online's live chat)."""
    time: float
    question: str
    answer: str
    kind: str
    type: str
    object_ids: tuple[str, ...]


@dataclass(frozen=True)
class ActionRecord:
    index: int
    verb: str
    hand: str
    object_id: str
    target_id: str | None
    direction: str | None
    start: float
    end: float
    start_frame: int
    end_frame: int
    quick: bool


@dataclass(frozen=True)
class ObjectRecord:
    object_id: str
    shape: str
    colour: str
    name: str
    label: str | None
    patch_colour: str | None
    liquid: str | None
    x: float
    y: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    start_frame: int
    end_frame: int  # exclusive


@dataclass
class Episode:
    episode_id: str
    split: str
    heldout: bool
    seed: int
    index: int
    fps: int
    width: int
    height: int
    frames: np.ndarray  # uint8 [T, H, W, 3] RGB
    timestamps: np.ndarray  # float64 [T], seconds, frame i at i / fps
    narrations: list[Narration]
    questions: list[Question]
    actions: list[ActionRecord]
    objects: list[ObjectRecord]
    static_segments: list[Segment]
    heldout_combinations: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(len(self.timestamps))

    @property
    def duration(self) -> float:
        """Seconds from first to last frame, videollm-online's (num_frames - 1) / fps."""
        return frame_time(self.num_frames - 1, self.fps)

    def frame_index(self, time: float) -> int:
        """The frame shown at `time` seconds (the latest frame not after it)."""
        index = int(np.floor(time * self.fps + 1e-9))
        if not 0 <= index < self.num_frames:
            raise IndexError(f"time {time} s is outside episode {self.episode_id} (0 - {self.duration} s)")
        return index

    def annotation_dict(self) -> dict[str, Any]:
        """Everything but the pixels, as JSON-ready plain data."""
        return {
            "episode_id": self.episode_id,
            "video_uid": self.episode_id,
            "split": self.split,
            "heldout": self.heldout,
            "seed": self.seed,
            "index": self.index,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "duration": self.duration,
            "objects": [asdict(o) for o in self.objects],
            "actions": [asdict(a) for a in self.actions],
            "static_segments": [asdict(s) for s in self.static_segments],
            "narrations": [asdict(n) for n in self.narrations],
            "questions": [asdict(q) for q in self.questions],
            "heldout_combinations": list(self.heldout_combinations),
            **self.extra,
        }


def _tuple_ids(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "object_ids": tuple(record["object_ids"])}


def episode_from_dict(data: dict[str, Any], frames: np.ndarray, timestamps: np.ndarray) -> Episode:
    known = {"episode_id", "video_uid", "split", "heldout", "seed", "index", "fps", "width", "height", "num_frames",
             "duration", "objects", "actions", "static_segments", "narrations", "questions", "heldout_combinations"}
    return Episode(
        episode_id=data["episode_id"],
        split=data["split"],
        heldout=bool(data["heldout"]),
        seed=int(data["seed"]),
        index=int(data["index"]),
        fps=int(data["fps"]),
        width=int(data["width"]),
        height=int(data["height"]),
        frames=frames,
        timestamps=timestamps,
        narrations=[Narration(**_tuple_ids(n)) for n in data["narrations"]],
        questions=[Question(**_tuple_ids(q)) for q in data["questions"]],
        actions=[ActionRecord(**a) for a in data["actions"]],
        objects=[ObjectRecord(**o) for o in data["objects"]],
        static_segments=[Segment(**s) for s in data["static_segments"]],
        heldout_combinations=list(data["heldout_combinations"]),
        extra={k: v for k, v in data.items() if k not in known},
    )
