"""On-disk layout of a synthetic dataset: frames (.npz), annotations (.json), a manifest.

Frames go into a zip-deflated .npz written with fixed zip timestamps, so the same seed gives
byte-identical files, and np.load returns exactly the uint8 pixels that were rendered.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .episode import Episode

FORMAT = "lionfs-synth"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
EPISODES_DIR = "episodes"
BAGS_DIR = "bags"
FRAMES_KEY, TIMESTAMPS_KEY = "frames", "timestamps"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest zip date: a constant keeps archives reproducible
JSON_INDENT = 1


class DatasetError(ValueError):
    """A dataset directory is missing, incomplete, of another format, or would be overwritten."""


def dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=JSON_INDENT, ensure_ascii=False) + "\n", encoding="utf-8")


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise DatasetError(f"{path} not found") from error
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path} is not valid JSON: {error}") from error


def write_frames(path: Path, frames: np.ndarray, timestamps: np.ndarray) -> None:
    """Save frames [T, H, W, 3] uint8 and timestamps [T] float64 as a reproducible .npz."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    with zipfile.ZipFile(path, "w") as archive:
        for key, array in ((FRAMES_KEY, frames), (TIMESTAMPS_KEY, timestamps.astype(np.float64))):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def read_frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise DatasetError(f"frames file {path} not found")
    with np.load(path, allow_pickle=False) as archive:
        return archive[FRAMES_KEY], archive[TIMESTAMPS_KEY]


def episode_json_path(root: Path, episode_id: str) -> Path:
    return root / EPISODES_DIR / f"{episode_id}.json"


def episode_frames_path(root: Path, episode_id: str) -> Path:
    return root / EPISODES_DIR / f"{episode_id}.npz"


def bag_path(root: Path, episode_id: str) -> Path:
    return root / BAGS_DIR / episode_id


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def narration_stream_entry(episode: Episode) -> dict[str, list[dict[str, Any]]]:
    """videollm-online's narration-stream shape: {annotation_uid: [{time, text}, ...]} per video."""
    return {f"{episode.episode_id}_narration": [{"time": n.time, "text": n.text, "kind": n.kind}
                                                for n in episode.narrations]}


def livechat_entry(episode: Episode) -> dict[str, Any]:
    """videollm-online's live-chat shape: a user turn and the assistant's answer at the same time."""
    conversation = []
    for question in episode.questions:
        conversation.append({"role": "user", "content": question.question, "time": question.time,
                             "kind": question.kind})
        conversation.append({"role": "assistant", "content": question.answer, "time": question.time,
                             "kind": question.kind})
    return {"video_uid": episode.episode_id, "conversation": conversation}


def check_output_dir(root: Path) -> Path:
    """A dataset goes only into a new or empty directory, so no stale episode survives in it."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"output directory {root} exists and is not empty; choose a new --out")
    return root


class DatasetWriter:
    """Writes episodes one at a time, then the manifest and the dataset-wide annotation files.

    The manifest is written last: a directory without one is an interrupted run.
    """

    def __init__(self, root: Path, header: dict[str, Any], subset_name: str):
        self.root = check_output_dir(Path(root))
        (self.root / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        self.header = header
        self.subset_name = subset_name
        self.entries: list[dict[str, Any]] = []
        self.narration_streams: dict[str, Any] = {}
        self.livechat: list[dict[str, Any]] = []

    def add(self, episode: Episode, bag: Path | None = None) -> dict[str, Any]:
        json_path = episode_json_path(self.root, episode.episode_id)
        frames_path = episode_frames_path(self.root, episode.episode_id)
        write_frames(frames_path, episode.frames, episode.timestamps)
        annotations = {"format": FORMAT, "version": FORMAT_VERSION,
                       "frames_file": frames_path.name, **episode.annotation_dict()}
        dump_json(json_path, annotations)
        entry = {
            "episode_id": episode.episode_id,
            "annotations": _relative(self.root, json_path),
            "frames": _relative(self.root, frames_path),
            "bag": _relative(self.root, bag) if bag is not None else None,
            "num_frames": episode.num_frames,
            "duration": episode.duration,
            "num_narrations": len(episode.narrations),
            "num_questions": len(episode.questions),
            "heldout_combinations": list(episode.heldout_combinations),
        }
        self.entries.append(entry)
        self.narration_streams[episode.episode_id] = narration_stream_entry(episode)
        self.livechat.append(livechat_entry(episode))
        return entry

    def close(self) -> Path:
        narration_name = f"narration_stream_{self.subset_name}.json"
        livechat_name = f"livechat_{self.subset_name}.json"
        dump_json(self.root / narration_name, self.narration_streams)
        dump_json(self.root / livechat_name, self.livechat)
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, **self.header,
                    "narration_stream": narration_name, "livechat": livechat_name,
                    "num_episodes": len(self.entries), "episodes": self.entries}
        path = self.root / MANIFEST_NAME
        dump_json(path, manifest)
        return path
