"""Ego4D / Ego-Exo4D narration streams in VideoLLM-online's annotation format.

Annotation file (``narration_stream_<split>.json`` or ``refined_narration_stream_<split>.json``)::

    {"<video_uid>": {"<annotation_uid>": [{"time": 12.3, "text": "You pick up the knife."}, ...]}}

times in seconds from the video's start. Frames come either from video files
``<videos>/<video_uid>.<ext>`` (decoded with OpenCV at ``frame_fps``) or from pre-extracted
features ``<features>/<video_uid>.{safetensors,npy,pt}`` shaped ``[T, n, C]`` at ``frame_fps``
(VideoLLM-online's ``.pt`` files: video duration is ``(T - 1) / frame_fps``); LION-FS's
egocentric features, if used, are ``<ego_features>/<video_uid>.*`` at ``frame_fps *
frames_per_frame``. Ego-Exo4D's atomic descriptions fit the same file once written in this shape.

Each annotation stream becomes one example, built as VideoLLM-online builds it: the clip starts
at the first narration's frame (``ceil(time * fps)``); a narration repeating the previous text is
skipped; two narrations on one frame keep the later text; narrations at or past the video's end
stop the stream; the clip ends at the last narration's frame; the instruction follows the first
frame.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .frame_sources import FeatureFrames, VideoFrames
from .frames import FrameSourceError, find_feature_file, probe_video, read_feature_file
from .stream_examples import ASSISTANT, TIME_EPSILON, StreamExample, TimedTurn

DEFAULT_INSTRUCTION = "Please concisely narrate the video in real time."
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")


class AnnotationError(ValueError):
    """The annotation file is not in VideoLLM-online's narration-stream shape."""


def read_narration_streams(path: str | Path) -> dict[str, dict[str, list[dict]]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise AnnotationError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected {{video_uid: {{annotation_uid: [narrations]}}}}")
    for video_uid, streams in data.items():
        if not isinstance(streams, dict):
            raise AnnotationError(f"{path}: video {video_uid!r} maps to {type(streams).__name__}, not {{annotation_uid: [...]}}")
        for annotation_uid, narrations in streams.items():
            if not isinstance(narrations, list) or any(not {"time", "text"} <= set(n) for n in narrations):
                raise AnnotationError(f"{path}: {video_uid}/{annotation_uid} must be a list of {{time, text}} objects")
    return data


def ceil_frame(time: float, fps: float) -> int:
    return math.ceil(time * fps - TIME_EPSILON)


def stream_frames(narrations: list[dict], fps: float, num_video_frames: int) -> list[tuple[int, str]]:
    """``(video frame, text)`` of the narrations kept, in VideoLLM-online's rules."""
    last_frame = num_video_frames - 1
    kept: list[tuple[int, str]] = []
    last_text = None
    for narration in sorted(narrations, key=lambda n: n["time"]):
        if kept and kept[-1][0] >= last_frame:
            break
        text = narration["text"]
        if text == last_text:
            continue
        frame = min(max(ceil_frame(narration["time"], fps), 0), last_frame)
        if kept and frame == kept[-1][0]:
            kept[-1] = (frame, text)
        else:
            kept.append((frame, text))
        last_text = text
    return kept


class _VideoIndex:
    """How many frames each video has at ``fps``, and its frame source, from features or video files."""

    def __init__(self, fps: float, videos=None, features=None, ego_features=None):
        if (videos is None) == (features is None):
            raise ValueError("give exactly one of videos (a directory of video files) or features (feature files)")
        self.fps = fps
        self.videos = Path(videos) if videos is not None else None
        self.features = Path(features) if features is not None else None
        self.ego_features = Path(ego_features) if ego_features is not None else None
        self._lengths: dict[str, int] = {}

    def video_file(self, video_uid: str) -> Path:
        for suffix in VIDEO_SUFFIXES:
            candidate = self.videos / f"{video_uid}{suffix}"
            if candidate.is_file():
                return candidate
        raise FrameSourceError(f"no video file for {video_uid} in {self.videos} (looked for {VIDEO_SUFFIXES})")

    def num_frames(self, video_uid: str) -> int:
        if video_uid not in self._lengths:
            if self.features is not None:
                self._lengths[video_uid] = _feature_length(find_feature_file(self.features, video_uid))
            else:
                self._lengths[video_uid] = probe_video(self.video_file(video_uid), self.fps)
        return self._lengths[video_uid]

    def source(self, video_uid: str, start: int, count: int):
        if self.features is not None:
            ego = str(find_feature_file(self.ego_features, video_uid)) if self.ego_features is not None else None
            return FeatureFrames(str(find_feature_file(self.features, video_uid)), start, count, ego)
        return VideoFrames(str(self.video_file(video_uid)), self.fps, start, count)


def _feature_length(path: Path) -> int:
    """Frames in a feature file, without reading the whole tensor where the format allows."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return int(handle.get_slice(next(iter(handle.keys()))).get_shape()[0])
    if path.suffix == ".npy":
        return int(np.load(path, mmap_mode="r").shape[0])
    return int(read_feature_file(path).shape[0])


def narration_stream_examples(
    annotation_file: str | Path,
    frame_fps: float,
    videos: str | Path | None = None,
    features: str | Path | None = None,
    ego_features: str | Path | None = None,
    instruction: str | None = DEFAULT_INSTRUCTION,
    limit: int | None = None,
) -> list[StreamExample]:
    """One example per (video, annotation stream) whose video or features are present."""
    index = _VideoIndex(frame_fps, videos, features, ego_features)
    examples = []
    for video_uid, streams in read_narration_streams(annotation_file).items():
        for annotation_uid, narrations in streams.items():
            if limit is not None and len(examples) >= limit:
                return examples
            kept = stream_frames(narrations, frame_fps, index.num_frames(video_uid)) if narrations else []
            if not kept:
                continue
            start, stop = kept[0][0], kept[-1][0]
            turns = [TimedTurn((frame - start) / frame_fps, ASSISTANT, text) for frame, text in kept]
            count = stop - start + 1
            examples.append(StreamExample(
                f"{video_uid}/{annotation_uid}", count, frame_fps, turns, index.source(video_uid, start, count),
                instruction, {"video_uid": video_uid, "annotation_uid": annotation_uid, "start_frame": start},
            ))
    return examples
