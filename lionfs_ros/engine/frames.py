"""Input checks: a frame is ``uint8 [H, W, 3]`` with a finite, strictly increasing time.

Checks run on the caller's thread (``push_frame``/``process_frame``/``ask``) so a bad input fails
where it was given, with the reason; the engine counts refusals by ``FrameError.reason``.
"""
from __future__ import annotations

import math

import numpy as np

from .types import FrameError

RGB_CHANNELS = 3


def check_time(t, what: str) -> float:
    try:
        value = float(t)
    except (TypeError, ValueError):
        raise FrameError("bad_time", f"{what} time must be a number (seconds), got {type(t).__name__}") from None
    if not math.isfinite(value):
        raise FrameError("bad_time", f"{what} time must be finite, got {value}")
    return value


def check_frame(rgb, t, last_time: float | None, pixels_optional: bool = False) -> tuple[np.ndarray | None, float]:
    """Return ``(rgb, t)`` or raise ``FrameError``; ``last_time`` is the previous accepted frame's time.

    ``pixels_optional``: ``rgb`` may be None (a frame given by its precomputed tokens)."""
    if rgb is None and pixels_optional:
        return None, _check_order(check_time(t, "frame"), last_time)
    if not isinstance(rgb, np.ndarray):
        raise FrameError("bad_type", f"a frame must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise FrameError("bad_dtype", f"a frame must be uint8 RGB, got dtype {rgb.dtype} (convert encodings first)")
    if rgb.ndim != 3 or rgb.shape[2] != RGB_CHANNELS:
        raise FrameError("bad_shape", f"a frame must be [H, W, 3] RGB, got shape {list(rgb.shape)}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise FrameError("empty", f"a frame must not be empty, got shape {list(rgb.shape)}")
    return rgb, _check_order(check_time(t, "frame"), last_time)


def _check_order(t: float, last_time: float | None) -> float:
    if last_time is not None and t <= last_time:
        raise FrameError("non_monotonic", f"frame time {t:.6f} s is not after the previous frame's {last_time:.6f} s")
    return t


def check_question(text, t) -> tuple[str, float]:
    if not isinstance(text, str) or not text.strip():
        raise FrameError("bad_question", "a question must be a non-empty string")
    return text.strip(), check_time(t, "question")
