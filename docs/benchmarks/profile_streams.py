"""Where a ``StreamGroup`` round's time goes on a GPU: the graphed batched towers and the batched LLM step.

For each preset: each vision tower's CUDA graph per batch size (``graph_ms``: the replay alone;
``call_ms``: with the per-frame device resize the group runs before it; ``eager_1_ms``: one frame
without a graph), and the batched LLM step's graph per (batch size, attention span) (``llm``: key
``BxSPAN``, rows on the pool's scratch row, so the step costs what a round of B frames costs at that
span). Medians of CUDA-event timings; writes ``$OUT/profile_streams.json`` (or ``./``).
``KERNELS=1`` also runs the batched LLM step eagerly (no graph) under ``torch.profiler`` at 8 rows and
the pool's full span and keeps its top GPU operators (``llm_kernels``): where the step's time goes.
``STREAMS=8`` builds a group of 8 streams (buckets up to 8; default 16); ``COMPILE=0`` captures the graphs with
the plain elementwise ops (default: compiled, as the engine's default config).

    PYTHONPATH=. python3 docs/benchmarks/profile_streams.py llama3-8b lionfs-8b
"""
from __future__ import annotations

import json
import os
import sys

import torch

from lionfs_ros.engine import EngineConfig, KeyframeConfig, StreamGroup
from lionfs_ros.engine.batched_step import batched_forward
from lionfs_ros.engine.batched_towers import GraphedTowerBatch
from lionfs_ros.engine.bench.presets import GENERAL_FPS, PRESETS, build_model, camera_frames

MAX_STREAMS = int(os.environ.get("STREAMS", "16"))
COMPILE = os.environ.get("COMPILE", "1") != "0"
WARMUP_RUNS = 3
SPANS = (512, 2048, 4096)  # attention spans reported (plus the pool's full capacity)
KERNEL_ROWS = 8  # rows of the profiled eager step
TOP_OPERATORS = 25


def median_ms(fn, reps: int = 20) -> float:
    for _ in range(WARMUP_RUNS):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return round(sorted(times)[len(times) // 2], 3)


def profile(name: str) -> dict:
    preset = PRESETS[name]
    model = build_model(preset, "cuda")
    out = {"towers": {}, "llm": {}}
    frames = camera_frames(MAX_STREAMS, preset.frame_size)
    for source, encoder in (("general", model.vision), ("ego", model.ego)):
        if encoder is None:
            continue
        towers = GraphedTowerBatch(encoder, model.device, MAX_STREAMS, COMPILE)
        out["towers"][source] = {b: {"graph_ms": median_ms(towers._graphs[b][0].replay),
                                     "call_ms": median_ms(lambda b=b: towers(frames[:b]), reps=10)}
                                 for b in towers.buckets}
        with torch.no_grad():
            pixels = towers.prep.normalize(towers.prep.resize(frames[0]))
            out["towers"][source]["eager_1_ms"] = median_ms(lambda: encoder.frame_tokens(pixels), reps=10)
        print(name, source, out["towers"][source], flush=True)
    cfg = EngineConfig(threshold=0.0, general_fps=GENERAL_FPS, kv_budget_tokens=preset.kv_budget_tokens, answers=False,
                       compile=COMPILE, keyframes=KeyframeConfig(grid_sizes=preset.grid_sizes))
    group = StreamGroup(model, {f"cam{i:02d}": cfg for i in range(MAX_STREAMS)})
    out["llm_compiled"], out["compile_fallback"] = group.batched.fused.compiled, group.batched.fused.compile_fallback
    largest = max(span for _, span in group.batched._graphs)
    for (b, span), (graph, _) in sorted(group.batched._graphs.items()):
        if span in SPANS or span == largest:
            out["llm"][f"{b}x{span}"] = median_ms(graph.replay)
    print(name, "llm", out["llm"], flush=True)
    if os.environ.get("KERNELS"):
        out["llm_kernels"] = operator_profile(group, largest)
    return out


def operator_profile(group: StreamGroup, span: int) -> list[dict]:
    """The batched step run eagerly on the scratch row (``KERNEL_ROWS`` rows, ``span`` slots): top GPU operators."""
    step, model = group.batched, group.model
    x = torch.zeros(KERNEL_ROWS, step.length, model.hidden_size, dtype=model.dtype, device=model.device)
    rows = torch.full((KERNEL_ROWS,), step.pool.scratch, dtype=torch.long, device=model.device)

    def run():
        step.pool.clear_scratch()
        batched_forward(step.fused, step.pool, rows, x, step.plan, span)

    for _ in range(WARMUP_RUNS):
        run()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    step.pool.clear_scratch()
    events = sorted(prof.key_averages(), key=lambda e: e.self_device_time_total, reverse=True)[:TOP_OPERATORS]
    table = [{"name": e.key[:80], "calls": e.count, "gpu_ms": round(e.self_device_time_total / 1000, 3)} for e in events]
    print("llm kernels", table, flush=True)
    return table


def main() -> None:
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "streams": MAX_STREAMS,
               "compile": COMPILE}
    for name in sys.argv[1:]:
        results[name] = profile(name)
        torch.cuda.empty_cache()
    with open(os.path.join(os.environ.get("OUT", "."), "profile_streams.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
