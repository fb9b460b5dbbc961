"""Memory over a long stream: the engine at 2 fps for an hour of stream time, sampled as it goes.

Random weights respond on every frame; ``bias_interval`` makes the model stay silent on its own
(as a trained one mostly does) and a user question every ``question_every`` seconds gets an answer
(written and committed inline), so the context holds frames, questions and answers and the KV
budget evicts all the while. Samples: process RSS, KV entries and bytes, next position,
compactions; the summary fits RSS against stream time after the warm-up (MiB per hour) and checks
that positions stayed under the backbone's limit.
"""
from __future__ import annotations

import numpy as np
import torch

from ..config import EngineConfig, KeyframeConfig
from ..engine import StreamEngine
from ..timing import now, rss_bytes
from .presets import Preset, build_model, camera_frames
from .speed import device_name

MIB = 1024 * 1024
DISTINCT_FRAMES = 32
WARM_UP_FRACTION = 0.25
SILENCE_MARGIN = 2.0  # times the interval boost that silences the calibration frames


def run_memory(preset: Preset, *, frames: int, fps: float, sample_every: int, budget: int, question_every: float,
               new_tokens: int, device: str | None = None) -> dict:
    model = build_model(preset, device)
    images = camera_frames(DISTINCT_FRAMES, preset.frame_size)
    cfg = EngineConfig(general_fps=fps, kv_budget_tokens=budget, evict_chunk_tokens=budget // 8,
                       max_new_tokens=new_tokens, keyframes=KeyframeConfig(num_keyframes=2, grid_sizes=preset.grid_sizes))
    from .presets import bias_interval

    threshold = model.config.stream.interval_threshold
    boost = bias_interval(model, images[:16], 0.0, threshold, scale=SILENCE_MARGIN)
    engine = StreamEngine(model, cfg)
    max_positions = model.llm.config.max_position_embeddings
    samples, start, max_position = [], now(), 0
    next_question = question_every
    for k in range(frames):
        t = k / fps
        if t >= next_question:
            engine.ask("what am I doing now?", t)
            next_question += question_every
        engine.process_frame(images[k % DISTINCT_FRAMES], t)
        stats = engine.stats()
        max_position = max(max_position, stats["next_position"])
        if k % sample_every == 0 or k == frames - 1:
            samples.append({
                "frame": k, "stream_time_s": t, "wall_s": now() - start, "rss_mib": rss_bytes() / MIB,
                "gpu_allocated_mib": torch.cuda.memory_allocated() / MIB if model.device.type == "cuda" else None,
                "kv_tokens": stats["kv_tokens"], "kv_bytes": stats["kv_bytes"], "next_position": stats["next_position"],
                "compactions": stats["compactions"], "answers": stats["answers"], "latency_p50_ms": stats["latency_p50_ms"],
            })
    stats = engine.stats()
    after = [s for s in samples if s["frame"] >= WARM_UP_FRACTION * frames]
    hours = np.array([s["stream_time_s"] for s in after]) / 3600.0
    rss = np.array([s["rss_mib"] for s in after])
    slope = float(np.polyfit(hours, rss, 1)[0]) if len(after) > 1 else 0.0
    kv = [s["kv_bytes"] for s in after]
    return {
        "preset": preset.name, "device": device_name(model.device), "torch": torch.__version__,
        "stream": {"frames": frames, "fps": fps, "stream_seconds": frames / fps, "wall_seconds": now() - start,
                   "questions": stats["questions"], "answers": stats["answers"], "interval_boost": boost},
        "engine": {"kv_budget_tokens": budget, "evict_chunk_tokens": cfg.evict_chunk_tokens,
                   "keep_recent_frames": cfg.keep_recent_frames, "position_mode": cfg.position_mode,
                   "backend": stats["backend"]},
        "summary": {
            "warm_up_frames": int(WARM_UP_FRACTION * frames),
            "rss_mib_after_warm_up": {"min": float(rss.min()), "max": float(rss.max()), "first": float(rss[0]),
                                      "last": float(rss[-1])},
            "rss_slope_mib_per_hour": slope,
            "kv_bytes_after_warm_up": {"min": min(kv), "max": max(kv)},
            "kv_tokens_max": max(s["kv_tokens"] for s in samples),
            "max_position": max_position, "max_position_embeddings": max_positions,
            "compactions": stats["compactions"], "evicted_frames": stats["evicted_frames"],
            "evicted_text": stats["evicted_text"], "latency_p50_ms": stats["latency_p50_ms"],
            "latency_p99_ms": stats["latency_p99_ms"],
        },
        "samples": samples,
    }
