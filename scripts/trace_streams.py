"""Where a StreamGroup round's time goes: torch.profiler over N streams' rounds (diagnostic for issue 19).

  python scripts/profile_streams.py --preset llama3-8b --streams 1,8 --out DIR [--device cpu]

Per N: builds nothing new (one group of max(N) streams), feeds prefill rounds, then profiles ``--rounds`` camera
rounds round by round and pipelined. Writes DIR/profile-N{n}-{mode}.json: host wall per round (decided or not),
GPU busy time (union of kernel intervals) inside the window, the largest host gaps between kernels, and the top
host ops (self CPU) and kernels (self device time); DIR/profile-N{n}-{mode}.trace.json.gz: the Chrome trace.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lionfs_ros.engine import EngineConfig, KeyframeConfig, StreamGroup  # noqa: E402
from lionfs_ros.engine.bench.presets import GENERAL_FPS, PRESETS, build_model, camera_frames  # noqa: E402
from lionfs_ros.engine.timing import now  # noqa: E402

CAMERA_FPS = 8.0
DISTINCT_FRAMES = 8
TOP = 25


def busy_and_gaps(events: list[dict]) -> tuple[float, list[tuple[float, float]]]:
    """Union of device kernel intervals (us) and the largest idle gaps between them (start us, length us)."""
    spans = sorted((e["ts"], e["ts"] + e.get("dur", 0)) for e in events)
    busy, gaps, end = 0.0, [], None
    for start, stop in spans:
        if end is None or start > end:
            if end is not None:
                gaps.append((end, start - end))
            busy += stop - start
            end = stop
        elif stop > end:
            busy += stop - end
            end = stop
    return busy, sorted(gaps, key=lambda g: -g[1])[:TOP]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="llama3-8b")
    parser.add_argument("--streams", default="1,8")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--prefill-rounds", type=int, default=16)
    parser.add_argument("--device")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    preset = PRESETS[args.preset]
    counts = [int(c) for c in args.streams.split(",")]
    model = build_model(preset, args.device)
    dev = model.device
    cfg = EngineConfig(threshold=0.0, general_fps=GENERAL_FPS, kv_budget_tokens=preset.kv_budget_tokens,
                       answers=False, compile=not args.no_compile, keyframes=KeyframeConfig(grid_sizes=preset.grid_sizes))
    ids = [f"cam{i:02d}" for i in range(max(counts))]
    group = StreamGroup(model, {sid: cfg for sid in ids})
    frames = {sid: camera_frames(DISTINCT_FRAMES, preset.frame_size, seed=i) for i, sid in enumerate(ids)}
    clock = {sid: 0 for sid in ids}
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    def batches(active, count):
        for _ in range(count):
            batch = {}
            for sid in active:
                k = clock[sid]
                batch[sid] = (frames[sid][k % DISTINCT_FRAMES], k / CAMERA_FPS, k)
                clock[sid] = k + 1
            yield batch

    for n in counts:
        active = ids[:n]
        for _ in group.process_rounds(batches(active, args.prefill_rounds)):
            pass
        sync()
        for mode in ("round_by_round", "pipelined"):
            rounds_ms = []
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
            with profile(activities=activities) as prof:
                last = now()
                source = batches(active, args.rounds)
                it = group.process_rounds(source) if mode == "pipelined" else map(group.process_round, source)
                for decisions in it:
                    t = now()
                    rounds_ms.append((any(d is not None for d in decisions.values()), round((t - last) * 1e3, 3)))
                    last = t
                sync()
            trace = os.path.join(args.out, f"profile-N{n}-{mode}.trace.json")
            prof.export_chrome_trace(trace)
            with open(trace) as f:
                events = json.load(f)["traceEvents"]
            with open(trace, "rb") as f, gzip.open(trace + ".gz", "wb") as g:
                shutil.copyfileobj(f, g)
            os.remove(trace)
            kernels = [e for e in events if e.get("cat") == "kernel" and e.get("ph") == "X"]
            busy_us, gaps = busy_and_gaps(kernels)
            window = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "user_annotation", "kernel")]
            wall_us = (max(e["ts"] + e.get("dur", 0) for e in window) - min(e["ts"] for e in window)) if window else 0
            averages = prof.key_averages()
            host = sorted(averages, key=lambda a: -a.self_cpu_time_total)[:TOP]
            device = sorted(averages, key=lambda a: -getattr(a, "self_device_time_total", 0))[:TOP]
            summary = {
                "preset": preset.name, "streams": n, "mode": mode, "compile": not args.no_compile,
                "rounds_ms": rounds_ms, "wall_ms": round(sum(ms for _, ms in rounds_ms), 3),
                "trace_window_ms": round(wall_us / 1e3, 3), "gpu_busy_ms": round(busy_us / 1e3, 3),
                "kernels": len(kernels),
                "largest_gaps_ms": [round(g / 1e3, 3) for _, g in gaps],
                "top_host_self_ms": [[a.key, round(a.self_cpu_time_total / 1e3, 3), a.count] for a in host],
                "top_device_self_ms": [[a.key, round(getattr(a, "self_device_time_total", 0) / 1e3, 3), a.count]
                                       for a in device],
            }
            with open(os.path.join(args.out, f"profile-N{n}-{mode}.json"), "w") as f:
                json.dump(summary, f, indent=1)
            print(f"N={n} {mode}: wall {summary['wall_ms']} ms, gpu busy {summary['gpu_busy_ms']} ms, "
                  f"{len(kernels)} kernels, gaps {summary['largest_gaps_ms'][:6]}", flush=True)


if __name__ == "__main__":
    main()
