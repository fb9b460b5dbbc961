"""Keyframes at run time: the engine's history of decided frames and the model's keyframe rule on it.

The rule itself and the thinking template are the model's (``model.thinking_template``); the
engine only keeps, per decided frame, the frame and its fast-path feature (the mean of its fused
frame tokens) for the last ``history_frames`` frames, and picks the keyframes of a response from
them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from lionfs_ros.model.configuration_lionfs import KeyframeConfig
from lionfs_ros.model.thinking_template import select_keyframe_indices


@dataclass
class HistoryFrame:
    rgb: np.ndarray
    time: float
    feature: torch.Tensor  # [d] mean of the fused frame tokens (float32, on the model's device)


def select_keyframes(history: Sequence[HistoryFrame], config: KeyframeConfig) -> list[HistoryFrame]:
    """The last frame of ``history`` (the trigger) plus novel recent frames; oldest first."""
    if not history:
        raise ValueError("no frames to pick keyframes from")
    recent = list(history)[-config.history_frames:]
    features = torch.stack([h.feature for h in recent]).cpu()  # [N, d]: the rule runs on the CPU, as it always has
    return [recent[i] for i in select_keyframe_indices(features, config)]
