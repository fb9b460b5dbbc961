"""Clocks, latency percentiles and process memory, for stats and benchmarks."""
from __future__ import annotations

import os
import time
from collections import deque

import numpy as np

now = time.perf_counter  # the engine's clock: monotonic, high resolution


class LatencyWindow:
    """The last ``size`` latencies (seconds); percentiles in milliseconds."""

    def __init__(self, size: int):
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)

    def percentile_ms(self, q: float) -> float | None:
        if not self._values:
            return None
        return float(np.percentile(np.fromiter(self._values, dtype=np.float64), q) * 1e3)

    def __len__(self) -> int:
        return len(self._values)


def percentiles_ms(seconds: list[float], qs=(50, 99)) -> dict[str, float | None]:
    if not seconds:
        return {f"p{q}": None for q in qs}
    values = np.asarray(seconds, dtype=np.float64) * 1e3
    return {f"p{q}": float(np.percentile(values, q)) for q in qs}


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
