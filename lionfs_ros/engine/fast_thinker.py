"""The fast thinker's per-frame work: encode a frame (general + egocentric window) and decide.

``FrameEncoder`` keeps the last ``ego.frames_per_frame`` egocentric tokens (the ego window ends at
the decided frame: a decided frame is always an ego frame too). At the start of a stream, before
the window is full, its oldest entry is repeated. The towers (RGB -> frame tokens) can be swapped
for faster runners of the same function (CUDA graphs, see ``cuda_graphs.py``).
"""
from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np
import torch

TokensFn = Callable[[np.ndarray], torch.Tensor]
"""RGB ``[H, W, 3]`` uint8 -> frame tokens ``[1, n, C]`` (preprocess, then the encoder's ``frame_tokens``)."""


def tower_tokens(model, source: str) -> TokensFn:
    encoder = model.vision if source == "general" else model.ego
    return lambda rgb: encoder.frame_tokens(model.preprocess(rgb, source))


class FrameEncoder:
    def __init__(self, model, general_tokens: TokensFn | None = None, ego_tokens: TokensFn | None = None):
        if model.config.ego.source == "features":
            raise ValueError(
                "ego.source='features' needs precomputed egocentric features per frame, which a live stream does not"
                " have: the online engine encodes frames with towers (use ego.source='tower' or 'none')")
        self.model = model
        self.general_tokens = general_tokens or tower_tokens(model, "general")
        self.has_ego = model.ego is not None
        self.ego_tokens = ego_tokens or (tower_tokens(model, "ego") if self.has_ego else None)
        self.window = model.config.ego.frames_per_frame if self.has_ego else 0
        self._ego: deque[torch.Tensor] = deque(maxlen=max(self.window, 1))  # each [1, n, C']

    @torch.no_grad()
    def add_ego(self, rgb: np.ndarray) -> None:
        if self.has_ego:
            self._ego.append(self.ego_tokens(rgb))

    def ego_window(self) -> torch.Tensor:
        """``[r, n, C']``: the last r ego tokens, oldest first, the oldest repeated while fewer exist."""
        held = list(self._ego)
        return torch.cat([held[0]] * (self.window - len(held)) + held)

    @torch.no_grad()
    def encode(self, rgb: np.ndarray) -> torch.Tensor:
        """A decided frame -> fused tokens ``[n, d]`` (it also enters the ego window)."""
        general = self.general_tokens(rgb)  # [1, n, C]
        if not self.has_ego:
            return self.model.embed_frames(general)[0]
        self.add_ego(rgb)
        return self.model.embed_frames(general, self.ego_window())[0]

    def reset(self) -> None:
        self._ego.clear()


def decide(model, logits: torch.Tensor, threshold: float) -> tuple[float, bool, int]:
    """Last-position logits ``[V]`` -> (P(interval), respond, most likely token) by VideoLLM-online's rule:
    respond when P(interval) < threshold or the interval token is not the most likely one."""
    probs = logits.float().softmax(dim=-1)
    interval = model.token_ids.interval
    p_interval, top = torch.stack([probs[interval], probs.argmax().float()]).tolist()  # one device sync
    return p_interval, p_interval < threshold or int(top) != interval, int(top)
