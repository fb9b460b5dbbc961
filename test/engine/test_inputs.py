"""Malformed frames and questions are refused with a clear error; the stream goes on."""
import math

import numpy as np
import pytest

from engine_parts import engine_config, stream_frames
from lionfs_ros.engine import FrameError, StreamEngine

GOOD = stream_frames(1, seed=8)[0]


@pytest.fixture
def engine(fused_model):
    e = StreamEngine(fused_model, engine_config())
    assert e.process_frame(GOOD, 1.0) is not None
    return e


@pytest.mark.parametrize("frame, reason, words", [
    (GOOD.astype(np.float32), "bad_dtype", "uint8"),
    (GOOD[..., 0], "bad_shape", "[H, W, 3]"),
    (np.concatenate([GOOD, GOOD[..., :1]], axis=-1), "bad_shape", "[H, W, 3]"),
    (GOOD[None], "bad_shape", "[H, W, 3]"),
    (GOOD[:0], "empty", "empty"),
    (GOOD.tolist(), "bad_type", "numpy array"),
])
def test_malformed_frames(engine, frame, reason, words):
    with pytest.raises(FrameError, match=words) as err:
        engine.process_frame(frame, 2.0)
    assert err.value.reason == reason and isinstance(err.value, ValueError)
    with pytest.raises(FrameError):
        engine.push_frame(frame, 2.0)
    assert engine.stats()[f"rejected_{reason}"] == 2


@pytest.mark.parametrize("t, reason", [(math.nan, "bad_time"), (math.inf, "bad_time"), ("soon", "bad_time"),
                                       (1.0, "non_monotonic"), (0.5, "non_monotonic")])
def test_bad_times(engine, t, reason):
    with pytest.raises(FrameError) as err:
        engine.process_frame(GOOD, t)
    assert err.value.reason == reason
    assert engine.process_frame(GOOD, 2.0) is not None  # a good frame still goes through
    stats = engine.stats()
    assert stats["rejected"] == 1 and stats["decided"] == 2


def test_bad_questions(engine):
    with pytest.raises(FrameError, match="non-empty"):
        engine.ask("   ", 1.0)
    with pytest.raises(FrameError, match="finite"):
        engine.ask("why?", math.nan)
    assert engine.stats()["rejected"] == 2
    with pytest.raises(ValueError, match="threshold"):
        engine.set_threshold(1.5)


def test_a_long_question_is_cut(engine):
    engine.ask("what " * 100, 2.0)
    decision = engine.process_frame(GOOD, 2.0)
    assert decision.query is not None and len(decision.query) < len("what " * 100)
    assert engine.stats()["truncated_questions"] == 1
