"""The overload policy: a bounded queue between the caller and the fast worker, newest frame wins.

``put`` never blocks: when the queue is full the oldest waiting frame is dropped (and counted), so
a slow engine always works on the most recent frames and a frame waits at most ``capacity`` steps.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class QueuedFrame:
    rgb: np.ndarray
    time: float
    meta: Any
    arrival: float  # engine clock (time.perf_counter) when it was pushed


class FrameQueue:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: deque[QueuedFrame] = deque()
        self._cond = threading.Condition()
        self._wakeups = 0  # other work for the consumer (a finished answer), see ``wake``
        self.dropped = 0
        self.high_water = 0

    def put(self, item: QueuedFrame) -> None:
        with self._cond:
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify()

    def wake(self) -> None:
        """Make a waiting ``get`` return (with None) so the consumer can do other work."""
        with self._cond:
            self._wakeups += 1
            self._cond.notify()

    def get(self, timeout: float) -> QueuedFrame | None:
        """The oldest waiting frame, or None on timeout or wake-up."""
        with self._cond:
            if not self._items and not self._wakeups:
                self._cond.wait(timeout)
            if self._wakeups:
                self._wakeups = 0
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def clear(self) -> int:
        with self._cond:
            count = len(self._items)
            self._items.clear()
            return count
