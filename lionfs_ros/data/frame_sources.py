"""Concrete frame sources: synthetic episodes, video files, precomputed feature files, a pixel cache.

Every source has ``load(recipe) -> FrameInputs``: the general encoder's input for each LLM frame
(resized uint8 pixels, or features ``[T, n, C]``) and the egocentric encoder's (``per_frame``
entries per LLM frame), already cut to the example's frames.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lionfs_ros.model.image_processing import STRETCH, ImageProcessor

from .frames import FrameRecipe, FrameSourceError, decode_video, ego_indices, read_feature_file


@dataclass
class FrameInputs:
    general: np.ndarray | torch.Tensor  # uint8 [T, S, S, 3] pixels, or float [T, n, C] features
    ego: np.ndarray | torch.Tensor | None  # uint8 [T*r, S', S', 3], float [T*r, (k,) C], or None

    @property
    def general_is_features(self) -> bool:
        return isinstance(self.general, torch.Tensor)


def _ego_pixels(recipe: FrameRecipe, frames_at) -> np.ndarray | None:
    if recipe.ego is None or recipe.ego_features:
        return None
    return recipe.ego.resize(frames_at())


def _path_digest(path: str) -> str:
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:8]


def _absolute_ego_indices(start: int, count: int, per_frame: int) -> np.ndarray:
    """Ego-rate indices (rate = frame_fps * per_frame) of the ego frames of LLM frames ``start..start+count-1``."""
    return ego_indices(start + count, per_frame, per_frame, 1)[start * per_frame:]


def _strides(native_fps: float, frame_fps: float, per_frame: int) -> tuple[int, int]:
    stride = native_fps / frame_fps
    ego_stride = stride / per_frame if per_frame else 1.0
    if stride != int(stride) or ego_stride != int(ego_stride):
        raise FrameSourceError(
            f"frames at {native_fps} fps cannot be sampled at {frame_fps} fps (general) and "
            f"{frame_fps * per_frame} fps (ego): both must divide the native rate"
        )
    return int(stride), int(ego_stride)


@dataclass
class SynthFrames:
    """A synthetic episode's frames (``lionfs synth``), sampled down to the LLM's frame rate."""

    root: str
    episode_id: str
    native_fps: float
    frame_fps: float
    num_frames: int  # at frame_fps

    def load(self, recipe: FrameRecipe) -> FrameInputs:
        from .synth.reader import load_episode

        if recipe.ego_features:
            raise FrameSourceError("synthetic episodes carry pixels only: use an ego tower, not ego features")
        frames = load_episode(self.root, self.episode_id).frames
        stride, ego_stride = _strides(self.native_fps, self.frame_fps, recipe.ego_per_frame)
        general = recipe.general.resize(frames[self.native_frames()])
        indices = ego_indices(self.num_frames, stride, recipe.ego_per_frame, ego_stride)
        return FrameInputs(general, _ego_pixels(recipe, lambda: frames[indices]))

    def native_frames(self, count: int | None = None) -> np.ndarray:
        """The native frame index of each of the first ``count`` LLM frames (default: all of them)."""
        stride, _ = _strides(self.native_fps, self.frame_fps, 0)
        return np.arange(self.num_frames if count is None else count) * stride

    @property
    def cache_name(self) -> str:
        return f"{self.episode_id}-{_path_digest(self.root)}"  # episode ids repeat across datasets


@dataclass
class VideoFrames:
    """Frames decoded from a video file (OpenCV) at the LLM's rate, from ``start`` for ``count`` frames."""

    path: str
    frame_fps: float
    start: int
    count: int

    def load(self, recipe: FrameRecipe) -> FrameInputs:
        if recipe.ego_features:
            raise FrameSourceError("a video source decodes pixels: ego features need a FeatureFrames source")
        general = recipe.general.resize(decode_video(Path(self.path), self.frame_fps, self.start, self.count))

        def ego_frames() -> np.ndarray:
            wanted = _absolute_ego_indices(self.start, self.count, recipe.ego_per_frame)
            first = int(wanted.min())
            decoded = decode_video(Path(self.path), self.frame_fps * recipe.ego_per_frame, first, int(wanted.max()) - first + 1)
            return decoded[wanted - first]

        return FrameInputs(general, _ego_pixels(recipe, ego_frames))

    @property
    def cache_name(self) -> str:
        return f"{Path(self.path).stem}-{_path_digest(self.path)}_{self.start}_{self.count}"


@dataclass
class FeatureFrames:
    """Precomputed per-video features (e.g. VideoLLM-online's ``[T, 10, 1024]`` SigLIP files at 2 fps)."""

    general_file: str
    start: int
    count: int
    ego_file: str | None = None  # features at frame_fps * frames_per_frame: [T*r, C] or [T*r, k, C]

    def load(self, recipe: FrameRecipe) -> FrameInputs:
        general = read_feature_file(Path(self.general_file))[self.start:self.start + self.count].float()
        if general.dim() != 3 or general.shape[0] != self.count:
            raise FrameSourceError(f"{self.general_file}: need [T, n, C] features covering frames "
                                   f"{self.start}..{self.start + self.count - 1}, got {list(general.shape)}")
        ego = None
        if recipe.ego_per_frame:
            if self.ego_file is None:
                raise FrameSourceError("the model fuses an egocentric source but this example has no ego feature file")
            all_ego = read_feature_file(Path(self.ego_file)).float()
            wanted = torch.from_numpy(_absolute_ego_indices(self.start, self.count, recipe.ego_per_frame))
            ego = all_ego[wanted.clamp(max=all_ego.shape[0] - 1)]
        return FrameInputs(general, ego)

    @property
    def cache_name(self) -> str:
        return f"{Path(self.general_file).stem}-{_path_digest(self.general_file)}_{self.start}_{self.count}"


def recipe_key(recipe: ImageProcessor, per_frame: int = 1) -> str:
    """A short stable name for one encoder's input recipe (the pixel cache keeps a folder per recipe).

    The default ``stretch`` resize is left out, so caches written before the resize mode existed keep their name."""
    fields = {k: v for k, v in asdict(recipe).items() if not (k == "resize_mode" and v == STRETCH)}
    text = json.dumps({**fields, "per_frame": per_frame}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_dirs(root: str | Path, recipe: FrameRecipe) -> tuple[str, str | None]:
    """The pixel cache folders of a recipe's general and ego inputs (models sharing an encoder recipe share one)."""
    root = Path(root)
    general = str(root / f"general-{recipe_key(recipe.general)}")
    if recipe.ego is None or recipe.ego_features:
        return general, None
    return general, str(root / f"ego-{recipe_key(recipe.ego, recipe.ego_per_frame)}")


@dataclass
class CachedFrames:
    """Resized uint8 frames written once by ``frame_cache.build_pixel_cache`` and memory-mapped after."""

    general_dir: str
    ego_dir: str | None
    name: str

    def paths(self) -> tuple[Path, Path | None]:
        general = Path(self.general_dir) / f"{self.name}.npy"
        return general, None if self.ego_dir is None else Path(self.ego_dir) / f"{self.name}.npy"

    def exists(self) -> bool:
        return all(path is None or path.is_file() for path in self.paths())

    def load(self, recipe: FrameRecipe) -> FrameInputs:
        general_path, ego_path = self.paths()
        general = np.array(np.load(general_path, mmap_mode="r"))  # a copy: writable, file closed
        ego = None if ego_path is None else np.array(np.load(ego_path, mmap_mode="r"))
        return FrameInputs(general, ego)

    def write(self, inputs: FrameInputs) -> None:
        for path, array in zip(self.paths(), (inputs.general, inputs.ego)):
            if path is not None and not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                _atomic_save(path, np.asarray(array))


def _atomic_save(path: Path, array: np.ndarray) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    partial.replace(path)
