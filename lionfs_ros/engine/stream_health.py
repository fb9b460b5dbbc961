"""Health of a camera stream: rate, gaps, stamp order, estimated drops, stalls, bad input.

ROS-free: the node feeds it (receive time, image stamp) pairs and polls it on a timer; replay
and tests feed it the same way. Times are seconds on one clock (the node's, which is the bag's
clock under use_sim_time), stamps are seconds on the camera's clock.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

# A gap between stamps longer than this many expected periods means frames were lost.
DROP_GAP_PERIODS = 1.5
# Inter-frame periods kept for the rate and period estimates.
PERIOD_WINDOW = 64
# Frames needed before the period is estimated from the stream itself.
MIN_FRAMES_FOR_PERIOD = 4


@dataclass
class StreamEvent:
    """Something the monitor reports once: kind is 'started', 'resumed' or 'stalled'."""

    kind: str
    time: float
    stamp: float
    value: float = 0.0


@dataclass
class StreamHealth:
    """Counters and events of one stream. `expected_rate` 0 means: learn it from the stamps."""

    stall_timeout: float = 1.0
    expected_rate: float = 0.0
    frames: int = 0
    bad_frames: int = 0
    bad_reasons: Counter = field(default_factory=Counter)
    dropped_estimate: int = 0
    stamp_regressions: int = 0
    max_gap: float = 0.0
    last_gap: float = 0.0
    last_receive_time: float | None = None
    last_stamp: float | None = None
    stalled: bool = False
    _periods: deque = field(default_factory=lambda: deque(maxlen=PERIOD_WINDOW))
    _arrivals: deque = field(default_factory=lambda: deque(maxlen=PERIOD_WINDOW + 1))
    _pending: list = field(default_factory=list)

    def __post_init__(self):
        if self.stall_timeout <= 0:
            raise ValueError(f"stall_timeout must be > 0 s, got {self.stall_timeout}")
        if self.expected_rate < 0:
            raise ValueError(f"expected_rate must be >= 0 Hz, got {self.expected_rate}")

    def frame(self, receive_time: float, stamp: float) -> None:
        """A valid frame arrived at `receive_time` carrying `stamp`."""
        if self.frames == 0:
            self._pending.append(StreamEvent("started", receive_time, stamp))
        elif self.stalled:
            self._pending.append(StreamEvent("resumed", receive_time, stamp, receive_time - self.last_receive_time))
        self.stalled = False
        if self.last_stamp is not None:
            gap = stamp - self.last_stamp
            if gap <= 0:
                self.stamp_regressions += 1
            else:
                self._account_gap(gap)
        self.frames += 1
        self.last_receive_time = receive_time
        self.last_stamp = stamp if self.last_stamp is None else max(stamp, self.last_stamp)
        self._arrivals.append(receive_time)

    def bad_frame(self, reason: str, stamp: float | None = None) -> None:
        """A message arrived that could not be used.

        Its stamp still advances the stream, so a rejected frame is not also counted as a drop.
        """
        self.bad_frames += 1
        self.bad_reasons[reason] += 1
        if stamp is not None and self.last_stamp is not None and stamp > self.last_stamp:
            self._account_gap(stamp - self.last_stamp)
            self.last_stamp = stamp

    def poll(self, now: float) -> list[StreamEvent]:
        """Check for a stall at `now` and return the events raised since the last poll."""
        if (
            self.frames
            and not self.stalled
            and now - self.last_receive_time > self.stall_timeout
        ):
            self.stalled = True
            self._pending.append(StreamEvent("stalled", now, self.last_stamp, now - self.last_receive_time))
        events, self._pending = self._pending, []
        return events

    @property
    def period(self) -> float | None:
        """Expected seconds between frames: configured, else the median observed period."""
        if self.expected_rate > 0:
            return 1.0 / self.expected_rate
        if len(self._periods) + 1 < MIN_FRAMES_FOR_PERIOD:
            return None
        return float(np.median(self._periods))

    def rate(self, now: float) -> float:
        """Frames per second over the recent window of arrivals; 0 once stalled."""
        if len(self._arrivals) < 2 or self.stalled or now - self._arrivals[-1] > self.stall_timeout:
            return 0.0
        span = self._arrivals[-1] - self._arrivals[0]
        return (len(self._arrivals) - 1) / span if span > 0 else 0.0

    def _account_gap(self, gap: float) -> None:
        period = self.period
        if period is not None and gap > DROP_GAP_PERIODS * period:
            self.dropped_estimate += int(round(gap / period)) - 1
        self._periods.append(gap)
        self.last_gap = gap
        self.max_gap = max(self.max_gap, gap)
