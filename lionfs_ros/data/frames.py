"""Frame sources: where an example's frames come from, and how they become model inputs.

A source gives the frames of the general encoder (one per LLM frame, at ``frame_fps``) and of the
egocentric encoder (``frames_per_frame`` per LLM frame, the ones up to and including it, so the
stream stays causal) as uint8 RGB arrays, or precomputed features instead of pixels.

``FrameRecipe`` says what the model wants: each encoder's ``ImageProcessor``
(``model.image_processing``: its ``resize`` is ``VisionEncoder.preprocess`` without the final
normalisation, which its ``normalize`` does on any device, so a batch can travel as uint8) and the
ego rate.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lionfs_ros.model.image_processing import ImageProcessor

FEATURE_SUFFIXES = (".safetensors", ".npy", ".pt")
SAFETENSORS_FEATURE_KEY = "features"


class FrameSourceError(ValueError):
    """A video or feature file is missing, unreadable or does not match its annotations."""


@dataclass(frozen=True)
class FrameRecipe:
    general: ImageProcessor
    ego: ImageProcessor | None  # None: the model has no egocentric tower (or takes ego features)
    ego_per_frame: int  # ego frames per LLM frame (ego.frames_per_frame), 0 without an ego source
    ego_features: bool = False  # the ego source is precomputed features

    @classmethod
    def for_model(cls, model) -> "FrameRecipe":
        source = model.config.ego.source
        per_frame = model.config.ego.frames_per_frame if source != "none" else 0
        ego = model.ego.processor if model.ego is not None else None
        return cls(model.vision.processor, ego, per_frame, ego_features=source == "features")


def ego_indices(num_frames: int, stride: int, per_frame: int, ego_stride: int) -> np.ndarray:
    """Native frame indices of the ego frames of LLM frames ``0..num_frames-1``: ``[num_frames * per_frame]``.

    LLM frame ``i`` is native frame ``i * stride``; its ego frames are the ``per_frame`` native
    frames ``ego_stride`` apart ending there (clamped at the first frame).
    """
    ends = np.arange(num_frames) * stride
    offsets = (np.arange(per_frame) - (per_frame - 1)) * ego_stride
    return np.clip(ends[:, None] + offsets[None, :], 0, None).reshape(-1)


def read_feature_file(path: Path) -> torch.Tensor:
    """A per-video feature tensor from ``.safetensors`` (one tensor, or key ``features``), ``.npy`` or
    ``.pt`` (VideoLLM-online's own files; read with ``weights_only=True``, tensors only)."""
    if not path.is_file():
        raise FrameSourceError(f"feature file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if SAFETENSORS_FEATURE_KEY in tensors:
            return tensors[SAFETENSORS_FEATURE_KEY]
        if len(tensors) != 1:
            raise FrameSourceError(f"{path}: expected one tensor or a '{SAFETENSORS_FEATURE_KEY}' key, got {sorted(tensors)}")
        return next(iter(tensors.values()))
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False))
    if path.suffix == ".pt":
        value = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(value, torch.Tensor):
            raise FrameSourceError(f"{path} holds a {type(value).__name__}, not a tensor")
        return value
    raise FrameSourceError(f"{path}: feature files must end in one of {FEATURE_SUFFIXES}")


def find_feature_file(directory: Path, video_uid: str) -> Path:
    for suffix in FEATURE_SUFFIXES:
        candidate = directory / f"{video_uid}{suffix}"
        if candidate.is_file():
            return candidate
    raise FrameSourceError(f"no feature file for video {video_uid} in {directory} (looked for {FEATURE_SUFFIXES})")


def decode_video(path: Path, fps: float, start: int = 0, count: int | None = None) -> np.ndarray:
    """RGB uint8 frames ``[count, H, W, 3]`` of a video sampled at ``fps``: frame ``start + i`` is the
    latest native frame at or before ``(start + i) / fps`` seconds (the last one past the end)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FrameSourceError(f"cannot open video {path}")
    try:
        native_fps = capture.get(cv2.CAP_PROP_FPS)
        if not native_fps or native_fps <= 0:
            raise FrameSourceError(f"{path}: the container reports no frame rate")
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count is None:
            count = video_frame_count(total, native_fps, fps) - start
        wanted = [int(np.floor((start + i) / fps * native_fps + 1e-6)) for i in range(count)]
        frames, index, last = [], -1, None
        for target in wanted:
            while index < target:
                ok, image = capture.read()
                if not ok:
                    break
                index, last = index + 1, image
            if last is None:
                raise FrameSourceError(f"{path}: no decodable frame")
            frames.append(cv2.cvtColor(last, cv2.COLOR_BGR2RGB))
        return np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)
    finally:
        capture.release()


def video_frame_count(native_frames: int, native_fps: float, fps: float) -> int:
    """Frames at ``fps`` covering a video of ``native_frames`` at ``native_fps``: ``floor(duration * fps) + 1``."""
    duration = max(native_frames - 1, 0) / native_fps
    return int(np.floor(duration * fps + 1e-6)) + 1


def probe_video(path: Path, fps: float) -> int:
    """How many frames at ``fps`` the video has."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FrameSourceError(f"cannot open video {path}")
    try:
        return video_frame_count(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS), fps)
    finally:
        capture.release()
