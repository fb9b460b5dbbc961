"""Read a synthetic dataset back for training and evaluation."""
from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Iterator

import numpy as np

from .episode import Episode, episode_from_dict, frame_time
from .storage import (FORMAT, FORMAT_VERSION, MANIFEST_NAME, DatasetError, episode_frames_path, episode_json_path,
                      load_json, read_frames)


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The dataset's manifest; raises DatasetError if the directory holds no finished dataset."""
    root = Path(root)
    if not (root / MANIFEST_NAME).exists():
        raise DatasetError(f"{root} has no {MANIFEST_NAME}: not a synthetic dataset, or its generation was "
                           "interrupted")
    manifest = load_json(root / MANIFEST_NAME)
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise DatasetError(f"{root / MANIFEST_NAME} is format {manifest.get('format')!r} version "
                           f"{manifest.get('version')!r}; this reader handles {FORMAT!r} version {FORMAT_VERSION}")
    return manifest


def episode_ids(root: str | Path) -> list[str]:
    return [entry["episode_id"] for entry in read_manifest(root)["episodes"]]


def load_episode(root: str | Path, episode_id: str, frames: bool = True) -> Episode:
    """One episode with frames uint8 [T, H, W, 3] (RGB) and timestamps [T] (seconds).

    frames=False skips the pixels (empty [0, H, W, 3] array) for annotation-only work.
    """
    root = Path(root)
    annotations = load_json(episode_json_path(root, episode_id))
    if annotations.get("format") != FORMAT or annotations.get("version") != FORMAT_VERSION:
        raise DatasetError(f"episode {episode_id} in {root} has an unsupported format/version")
    if frames:
        pixels, timestamps = read_frames(episode_frames_path(root, episode_id))
        if len(pixels) != annotations["num_frames"]:
            raise DatasetError(f"episode {episode_id}: {len(pixels)} frames stored, "
                               f"{annotations['num_frames']} expected")
    else:
        pixels = np.zeros((0, annotations["height"], annotations["width"], 3), np.uint8)
        timestamps = np.array([frame_time(i, annotations["fps"]) for i in range(annotations["num_frames"])],
                              np.float64)
    data = {k: v for k, v in annotations.items() if k not in ("format", "version", "frames_file")}
    return episode_from_dict(data, pixels, timestamps)


def iter_dataset(root: str | Path, frames: bool = True) -> Iterator[Episode]:
    """Episodes in manifest order, loaded one at a time."""
    for episode_id in episode_ids(root):
        yield load_episode(root, episode_id, frames=frames)
