"""Is a decided frame's tower graph waiting for its own launch? (issue 14, a probe)

A profiled decided frame (``frame_timeline_probe.py``, H200) showed the GPU idle ~190 us between the end of the resize
graph and the first kernel of the tower graph, the host meanwhile in nothing but the launch. This probe times the
single-frame path of ``engine/graphed_frame.GraphedTower`` on the GPU's own clock (CUDA events on the stream between
its pieces), unprofiled, for SigLIP-L/16-384 with the tower's attention 'triton' and 'sdpa':
- ``idle_launch``: upload, resize graph, tower graph, launched with the GPU idle, as a frame arrives;
- ``busy_launch``: the same launched behind a ~3 ms GPU sleep, so every launch is queued before the GPU gets to it:
  what the pieces take on the GPU alone.
Their difference in ``tower_ms`` is what the tower graph's launch leaves exposed. Also the host's time in each
``replay`` call, and the whole call (``GraphedTower(rgb)``, synchronized) by the wall clock.

    PYTHONPATH=. python3 scripts/tower_launch_probe.py --out DIR    # one GPU, ~60 s
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tower_bench import CAMERA, TOWERS, build  # noqa: E402

from lionfs_ros.engine.graphed_frame import GraphedTower  # noqa: E402

REPS = 40
SLEEP_CYCLES = 6_000_000  # ~3 ms at the H200's clock: longer than the host needs to queue a frame's pieces


def timed_pieces(tower: GraphedTower, rgb: np.ndarray, busy: bool) -> dict:
    """GPU ms of upload, resize and tower (events between them) and host us in each replay call, one frame."""
    events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
    torch.cuda.synchronize()
    if busy:
        torch.cuda._sleep(SLEEP_CYCLES)
    events[0].record()
    tower.upload(rgb)
    events[1].record()
    t0 = time.perf_counter()
    tower._resize_graph(rgb.shape).replay()
    t1 = time.perf_counter()
    events[2].record()
    tower.graph.replay()
    t2 = time.perf_counter()
    events[3].record()
    torch.cuda.synchronize()
    return {"upload_ms": events[0].elapsed_time(events[1]), "resize_ms": events[1].elapsed_time(events[2]),
            "tower_ms": events[2].elapsed_time(events[3]), "host_resize_replay_us": (t1 - t0) * 1e6,
            "host_tower_replay_us": (t2 - t1) * 1e6}


def median_of(runs: list[dict]) -> dict:
    return {key: float(np.median([r[key] for r in runs])) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    device = torch.device("cuda")
    config, token = TOWERS["siglip_l16_384"]
    enc = build(config, token, device, torch.bfloat16)
    rgb = np.random.default_rng(0).integers(0, 256, (*CAMERA, 3), dtype=np.uint8)
    result = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__, "reps": REPS}
    for attention in ("triton", "sdpa"):
        tower = GraphedTower(enc, device, compile=True, attention=attention)
        for _ in range(3):
            tower(rgb)  # captures the graphs
        walls = []
        for _ in range(REPS):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            tower(rgb)
            torch.cuda.synchronize()
            walls.append((time.perf_counter() - t0) * 1e3)
        entry = {"attention_run": tower.forward.attention_run, "whole_call_ms": float(np.median(walls))}
        for mode in ("idle_launch", "busy_launch"):
            entry[mode] = median_of([timed_pieces(tower, rgb, busy=mode == "busy_launch") for _ in range(REPS)])
        entry["exposed_launch_ms"] = entry["idle_launch"]["tower_ms"] - entry["busy_launch"]["tower_ms"]
        result[attention] = entry
        print(attention, json.dumps(entry), flush=True)
        del tower
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tower_launch.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
