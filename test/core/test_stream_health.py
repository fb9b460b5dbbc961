"""Stream health bookkeeping: start, stall, resume, drops, stamp order, bad input."""
import pytest

from lionfs_ros.engine.stream_health import StreamHealth


def feed(health, times, period=0.1):
    for t in times:
        health.frame(receive_time=t, stamp=t)


def test_start_stall_resume():
    health = StreamHealth(stall_timeout=0.5)
    assert health.poll(0.0) == []
    feed(health, [0.0, 0.1, 0.2])
    assert [e.kind for e in health.poll(0.3)] == ["started"]
    stalled = health.poll(0.8)
    assert [e.kind for e in stalled] == ["stalled"] and stalled[0].value == pytest.approx(0.6)
    assert health.poll(1.5) == []  # reported once
    health.frame(2.0, 2.0)
    resumed = health.poll(2.0)
    assert [e.kind for e in resumed] == ["resumed"] and resumed[0].value == pytest.approx(1.8)


def test_drops_estimated_from_stamp_gaps():
    health = StreamHealth(stall_timeout=10)
    feed(health, [i * 0.1 for i in range(10)])
    health.frame(1.3, 1.3)  # 0.9 -> 1.3: three frames missing
    assert health.dropped_estimate == 3
    assert health.period == pytest.approx(0.1)


def test_configured_rate_and_stamp_regressions():
    health = StreamHealth(stall_timeout=10, expected_rate=10)
    health.frame(0.0, 0.0)
    health.frame(0.1, 0.5)
    assert health.dropped_estimate == 4
    health.frame(0.2, 0.4)
    assert health.stamp_regressions == 1


def test_rejected_frames_count_and_are_not_drops():
    health = StreamHealth(stall_timeout=10)
    feed(health, [i * 0.1 for i in range(5)])
    health.bad_frame("truncated", stamp=0.5)
    health.frame(0.6, 0.6)
    assert health.bad_frames == 1 and health.bad_reasons["truncated"] == 1
    assert health.dropped_estimate == 0


def test_rate_over_recent_window():
    health = StreamHealth(stall_timeout=1)
    feed(health, [i * 0.05 for i in range(21)])
    assert health.rate(1.0) == pytest.approx(20.0)
    assert health.rate(5.0) == 0.0


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="stall_timeout"):
        StreamHealth(stall_timeout=0)
