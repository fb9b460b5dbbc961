"""Small measurement helpers: latency summaries and peak memory of a process."""
from __future__ import annotations

import resource
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

KIB_PER_MIB = 1024
BYTES_PER_MIB = 1024 * 1024


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_s: float | None
    p99_s: float | None
    mean_s: float | None
    max_s: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(values: list[float | None]) -> LatencySummary:
    """p50/p99 with linear interpolation (numpy's default); None values are skipped."""
    data = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if data.size == 0:
        return LatencySummary(0, None, None, None, None)
    p50, p99 = np.percentile(data, [50, 99])
    return LatencySummary(int(data.size), float(p50), float(p99), float(data.mean()), float(data.max()))


def own_peak_rss_mib() -> float:
    """Peak resident memory of this process since it started (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB


def process_peak_rss_mib(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of another live process, None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / KIB_PER_MIB
    except (OSError, ValueError, IndexError):
        return None
    return None


def torch_peak_gpu_mib() -> float | None:
    """Peak GPU memory torch allocated in this process; None without CUDA (or without torch loaded)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / BYTES_PER_MIB
