"""Helpers for the engine tests: tiny real models (saved and loaded), calibrated to speak sometimes."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from tiny_parts import make_config, random_frames, write_tiny_parts  # noqa: E402

from lionfs_ros.engine import EngineConfig, KeyframeConfig  # noqa: E402
from lionfs_ros.model import LionFSModel  # noqa: E402

# Logit added to the interval token for a typical decision state: random tiny models never pick
# the interval token; this makes P(interval) spread around 0.5-0.9 over random frames.
INTERVAL_BOOST = 7.0
CALIBRATION_FRAMES = 12
FRAME_SIZE = 40


def calibrate_interval(model: LionFSModel, boost: float = INTERVAL_BOOST, seed: int = 99) -> None:
    """Add ``boost`` times the mean decision state's direction to the interval token's output row."""
    frames = random_frames(2 * CALIBRATION_FRAMES, seed, FRAME_SIZE)
    with torch.no_grad():
        general = model.preprocess(frames[::2])
        ego = model.preprocess(frames, "ego") if model.ego is not None else None
        embeds = model.embed_frames(general, ego)
        sample = model.formatter.encode([{"role": "stream", "num_frames": CALIBRATION_FRAMES}])
        out = model.step_ids(sample.input_ids, embeds)
        ends = (sample.input_ids == model.token_ids.placeholder).nonzero().squeeze(-1).view(-1, model.tokens_per_frame)[:, -1]
        mean = out.hidden_states[0, ends].mean(0)
        head = model.llm.get_output_embeddings().weight
        head[model.token_ids.interval] += boost * mean / mean.norm() ** 2


def build_model(dirs: dict, root: Path, *, fused: bool = True, beta: float | None = 0.5, seed: int = 0) -> LionFSModel:
    """A tiny LION-FS model from the tiny HF parts, calibrated, saved to ``root`` and loaded back."""
    torch.manual_seed(seed)
    model = LionFSModel.from_config(make_config(dirs, fused=fused, beta=beta)).eval()
    calibrate_interval(model)
    model.save_pretrained(root)
    return LionFSModel.from_pretrained(root).eval()


def engine_config(**overrides) -> EngineConfig:
    """Small, fast settings for the tiny model (4x4 patch grid, 1024 positions); the slow path always thinks
    (the tiny models were never trained with the template, so 'auto' would leave it out)."""
    values = dict(
        slow_path="on", general_fps=2.0, kv_budget_tokens=600, evict_chunk_tokens=100, keep_recent_frames=8, max_new_tokens=6,
        max_query_tokens=16, keyframes=KeyframeConfig(num_keyframes=2, history_frames=4, grid_sizes=(2, 4), max_regions=2),
    )
    values.update(overrides)
    return EngineConfig(**values)


def stream_frames(count: int, seed: int = 0, size: int = FRAME_SIZE) -> np.ndarray:
    return random_frames(count, seed, size)


__all__ = ["build_model", "calibrate_interval", "engine_config", "random_frames", "stream_frames", "write_tiny_parts"]
