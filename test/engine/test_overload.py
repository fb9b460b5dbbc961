"""Overload: frames faster than the engine go to a bounded queue; the newest wins; latency stays bounded."""
import time

from engine_parts import engine_config, stream_frames
from lionfs_ros.engine import StreamEngine
from lionfs_ros.engine.frame_queue import FrameQueue, QueuedFrame
from test_nonblocking import wait_until

BURST = 60
QUEUE = 2


def item(t):
    return QueuedFrame(None, t, None, 0.0)


def test_queue_drops_the_oldest_and_counts():
    q = FrameQueue(2)
    for t in range(5):
        q.put(item(float(t)))
    assert q.dropped == 3 and len(q) == 2
    assert [q.get(0.0).time, q.get(0.0).time] == [3.0, 4.0] and q.get(0.0) is None


def test_burst_faster_than_the_engine_is_dropped_newest_first(fused_model):
    cfg = engine_config(threshold=0.0, general_fps=1000.0, frame_queue_size=QUEUE, max_new_tokens=2)
    engine = StreamEngine(fused_model, cfg)
    decisions = []
    engine.on_decision = decisions.append
    frames = stream_frames(4, seed=7)
    engine.start()
    try:
        for k in range(BURST):  # as fast as the caller can: far faster than a decision
            engine.push_frame(frames[k % 4], k * 0.01, meta=k)
        wait_until(lambda: engine.stats()["queue_depth"] == 0 and len(decisions) + engine.stats()["dropped"] == BURST)
    finally:
        engine.stop()
    stats = engine.stats()
    assert stats["dropped"] > 0 and stats["queue_high_water"] <= QUEUE
    assert stats["frames_in"] == BURST == stats["decided"] + stats["dropped"]
    assert decisions[-1].meta == BURST - 1  # the newest frame is always decided
    assert [d.meta for d in decisions] == sorted(d.meta for d in decisions)
    # A decided frame waited for at most the frames queued before it plus the one in progress.
    slowest = max(d.compute_s for d in decisions)
    assert max(d.latency_s for d in decisions) <= (QUEUE + 1) * slowest + 0.05
    assert stats["latency_p99_ms"] is not None


def test_push_frame_never_blocks(fused_model):
    engine = StreamEngine(fused_model, engine_config(general_fps=1000.0, frame_queue_size=1))
    frames = stream_frames(1, seed=7)
    started = time.perf_counter()
    for k in range(200):  # not started: nothing consumes, the queue stays at one frame
        engine.push_frame(frames[0], k * 0.01)
    assert time.perf_counter() - started < 1.0
    assert engine.stats()["dropped"] == 199 and engine.stats()["queue_depth"] == 1
