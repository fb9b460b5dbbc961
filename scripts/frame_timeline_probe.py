"""A decided frame's end-to-end timeline on a GPU (issue 14): where its latency goes beyond the kernels.

``lionfs bench`` times ``StreamEngine.process_frame`` from call to return; its stage breakdown syncs between stages.
This probe runs the same engine (a bench preset, a bench variant) and profiles ``--frames`` decided frames with
``torch.profiler`` (CPU and CUDA): per frame the wall time, the GPU's busy time (union of its kernels and copies),
the wait before the first kernel and after the last, the largest idle gaps between kernels with the kernels on
either side and the CPU ops that ran meanwhile, the first GPU operations, the time in copies and the GPU time by
kernel name. JSON in ``--out``/frame_timeline.json.

    PYTHONPATH=. python3 scripts/frame_timeline_probe.py --preset llama3-8b --out /tmp/ft
    PYTHONPATH=. python3 scripts/frame_timeline_probe.py --preset tiny --device cpu --out /tmp/ft   # a CPU smoke
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lionfs_ros.engine import EngineConfig, StreamEngine
from lionfs_ros.engine.bench.presets import PRESETS, build_model, camera_frames
from lionfs_ros.engine.bench.variants import variant_fields

DISTINCT_FRAMES = 16
TOP_GAPS = 12
GAP_US = 3.0  # idle stretches shorter than this are launch spacing, not listed
FIRST_OPS = 6  # a frame's first GPU operations listed (the upload, the resize, the tower's first kernels)
TOP_KERNELS = 30  # kernel names listed by their time in a frame


def union_us(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, -float("inf")
    for start, stop in sorted(spans):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def frame_report(cpu_span: tuple[float, float], gpu: list, cpu_ops: list) -> dict:
    """One frame: ``gpu`` (start, end, name) of the kernels/copies that started inside ``cpu_span``."""
    start, stop = cpu_span
    spans = [(s, e) for s, e, _ in gpu]
    gaps = []
    for (s0, e0, n0), (s1, _, n1) in zip(gpu, gpu[1:]):
        if s1 - e0 > GAP_US:
            meanwhile = sorted({name for s, e, name in cpu_ops if s < s1 and e > e0})[:6]
            gaps.append({"us": round(s1 - e0, 1), "after": n0[:70], "before": n1[:70], "cpu": meanwhile})
    gaps.sort(key=lambda g: -g["us"])
    return {"wall_us": round(stop - start, 1), "gpu_busy_us": round(union_us(spans), 1), "kernels": len(gpu),
            "before_first_us": round(gpu[0][0] - start, 1) if gpu else None,
            "after_last_us": round(stop - max(e for _, e, _ in gpu), 1) if gpu else None,
            "gaps_over_3us_total": round(sum(g["us"] for g in gaps), 1), "top_gaps": gaps[:TOP_GAPS],
            "first_ops": [{"name": n[:70], "at_us": round(s - start, 1), "us": round(e - s, 1)} for s, e, n in gpu[:FIRST_OPS]],
            "copies_us": round(sum(e - s for s, e, n in gpu if n.startswith("Memcpy")), 1),
            "by_kernel": by_kernel(gpu)}


def by_kernel(gpu: list) -> list[dict]:
    """A frame's GPU time by kernel name (the first 90 characters), largest first: calls and microseconds."""
    totals: dict[str, list] = {}
    for s, e, name in gpu:
        entry = totals.setdefault(name[:90], [0, 0.0])
        entry[0] += 1
        entry[1] += e - s
    ranked = sorted(totals.items(), key=lambda item: -item[1][1])[:TOP_KERNELS]
    return [{"name": name, "calls": calls, "us": round(us, 1)} for name, (calls, us) in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="llama3-8b", choices=sorted(PRESETS))
    parser.add_argument("--variant", default="graphs+compile+triton")
    parser.add_argument("--device", default=None)
    parser.add_argument("--prefill", type=int, default=40, help="decided frames before the profiled ones")
    parser.add_argument("--frames", type=int, default=8, help="decided frames profiled")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    model = build_model(preset, args.device)
    fields, _ = variant_fields(args.variant)
    cfg = EngineConfig(general_fps=1e6, answers=False, kv_budget_tokens=preset.kv_budget_tokens,
                       camera_size=preset.frame_size[::-1], **fields)
    engine = StreamEngine(model, cfg)
    frames = camera_frames(DISTINCT_FRAMES, preset.frame_size)
    for k in range(args.prefill):
        engine.process_frame(frames[k % DISTINCT_FRAMES], k / 2.0)
    cuda = model.device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    walls = []
    with torch.profiler.profile(activities=activities) as prof:
        for k in range(args.prefill, args.prefill + args.frames):
            t0 = time.perf_counter()
            with torch.profiler.record_function("decided_frame"):
                engine.process_frame(frames[k % DISTINCT_FRAMES], k / 2.0)
            walls.append((time.perf_counter() - t0) * 1e6)
    events = prof.events()
    frames_cpu = sorted((e.time_range.start, e.time_range.end) for e in events  # the CPU range, not its GPU marks
                        if e.name == "decided_frame" and not str(e.device_type).endswith("CUDA"))
    gpu = sorted((e.time_range.start, e.time_range.end, e.name) for e in events
                 if str(e.device_type).endswith("CUDA") and e.time_range.end > e.time_range.start)
    cpu_ops = [(e.time_range.start, e.time_range.end, e.name) for e in events
               if not str(e.device_type).endswith("CUDA") and e.name != "decided_frame"
               and not e.name.startswith(("cuda", "aten::empty", "aten::as_strided", "aten::view"))]
    reports = []
    for span in frames_cpu:
        inside = [g for g in gpu if span[0] <= g[0] <= span[1]]
        reports.append(frame_report(span, inside, [o for o in cpu_ops if span[0] <= o[0] <= span[1]]))
    summary = {key: float(np.median([r[key] for r in reports if r[key] is not None]))
               for key in ("wall_us", "gpu_busy_us", "kernels", "before_first_us", "after_last_us",
                           "gaps_over_3us_total")} if cuda and reports else {}
    result = {"preset": args.preset, "variant": args.variant, "device": str(model.device),
              "timed_wall_us_unprofiled_clock": walls, "median": summary, "frames": reports}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "frame_timeline.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(summary), flush=True)
    if reports and cuda:
        for gap in reports[len(reports) // 2]["top_gaps"]:
            print(json.dumps(gap), flush=True)
        for kernel in reports[len(reports) // 2]["by_kernel"]:
            print(json.dumps(kernel), flush=True)


if __name__ == "__main__":
    main()
