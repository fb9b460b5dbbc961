"""Each encoder samples its own time grid; other frames are skipped, never queued."""
import numpy as np

from engine_parts import engine_config, stream_frames
from lionfs_ros.engine import StreamEngine
from lionfs_ros.engine.rates import EGO, GENERAL, SKIP, RateGate

CAMERA_FPS = 30.0


def routes(gate, times):
    return [gate.classify(t) for t in times]


def test_30fps_camera_into_2fps_general_and_8fps_ego():
    times = np.arange(57) / CAMERA_FPS  # 0 .. 1.87 s
    out = routes(RateGate(2.0, 8.0, 0.1), times)
    general = [t for t, r in zip(times, out) if r == GENERAL]
    assert np.allclose(general, [0.0, 0.5, 1.0, 1.5], atol=1 / CAMERA_FPS)
    assert out.count(GENERAL) + out.count(EGO) == 16  # 8 fps over 2 s, decided frames included
    ego = [t for t, r in zip(times, out) if r != SKIP]
    assert max(np.diff(ego)) < 2 / 8 and min(np.diff(ego)) > 0.5 / 8
    assert out.count(SKIP) == len(times) - 16


def test_tolerance_gaps_and_no_drift():
    gate = RateGate(2.0, None, 0.1)
    assert routes(gate, [0.0, 0.46, 0.9, 0.96, 1.2, 2.7, 2.9, 3.01]) == [
        GENERAL, GENERAL,  # 0.46 is within 10% of a period before 0.5
        SKIP, GENERAL,  # 0.9 is too early for 1.0; 0.96 counts
        SKIP, GENERAL,  # after a gap the next frame is decided ...
        SKIP, GENERAL,  # ... and the grid stays where it was (3.0), it does not drift to 2.7 + 0.5
    ]


def test_engine_routes_a_camera_stream(fused_model):
    engine = StreamEngine(fused_model, engine_config(general_fps=2.0))  # ego: 2 x 2 fps (frames_per_frame = 2)
    frames = stream_frames(4, seed=9)
    decided = [engine.process_frame(frames[k % 4], k / CAMERA_FPS) for k in range(57)]  # 0 .. 1.87 s
    stats = engine.stats()
    assert stats["decided"] == 4 == sum(d is not None for d in decided)
    assert stats["ego_frames"] == 4 and stats["skipped"] == 57 - 8
    assert engine.encoder.ego_window().shape[0] == 2
