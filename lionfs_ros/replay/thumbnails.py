"""Keyframe thumbnails for the report: small copies of recent frames, kept until responses claim them.

A response names its triggering frame only after it was generated (seconds later, live), so the
last frames are kept downscaled in a ring; a claimed frame becomes a JPEG data URI that
report.html embeds, keeping the report one self-contained file.
"""
from __future__ import annotations

import base64
from collections import OrderedDict

import cv2
import numpy as np

THUMBNAIL_WIDTH = 160  # px: readable in a table row, about 5 KB as JPEG
JPEG_QUALITY = 80
# Frames kept: at 30 fps about 17 s, longer than any answer takes to be written; at 160x120
# that is about 30 MB at most.
RING_FRAMES = 512


def downscale(rgb: np.ndarray, width: int = THUMBNAIL_WIDTH) -> np.ndarray:
    height, src_width = rgb.shape[:2]
    if src_width <= width:
        return rgb.copy()
    new_height = max(1, round(height * width / src_width))
    return cv2.resize(rgb, (width, new_height), interpolation=cv2.INTER_AREA)


def jpeg_data_uri(rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"cannot encode a {rgb.shape} thumbnail")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


class ThumbnailRing:
    """`add(index, rgb)` for every frame, `claim(index)` when a response names it, `uri(index)` at report time."""

    def __init__(self, capacity: int = RING_FRAMES):
        self.capacity = capacity
        self._recent: OrderedDict[int, np.ndarray] = OrderedDict()
        self._claimed: dict[int, str] = {}

    def add(self, index: int, rgb: np.ndarray) -> None:
        self._recent[index] = downscale(rgb)
        while len(self._recent) > self.capacity:
            self._recent.popitem(last=False)

    def claim(self, index: int | None) -> None:
        if index is not None and index not in self._claimed and index in self._recent:
            self._claimed[index] = jpeg_data_uri(self._recent[index])

    def uri(self, index: int | None) -> str | None:
        if index is None:
            return None
        if index not in self._claimed:
            self.claim(index)
        return self._claimed.get(index)
