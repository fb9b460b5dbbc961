"""Speed: the engine's fast and slow paths against the naive loop, measured in one run, same inputs.

Fast path: decided frames (camera-sized RGB in, decision out: preprocessing, vision, LLM step and
the decision included), after a warm-up that fills the context to ``prefill_frames`` frames.
Slow path: the thinking prompt for the last keyframes on that context, then ``new_tokens`` greedy
tokens (EOS ignored so both sides decode the same length): time to first token and decoding
tokens per second. Equality: per frame P(interval) and the most likely token, and the generated ids.
Concurrency: frames decided while the slow thinker writes on its fork, from another thread.
"""
from __future__ import annotations

import platform
import threading

import numpy as np
import torch

from ..config import EngineConfig, KeyframeConfig
from ..engine import StreamEngine
from ..slow_thinker import SlowThinkRequest
from ..timing import now, percentiles_ms, rss_bytes
from .naive import NaiveStream, naive_generate
from .presets import Preset, build_model, camera_frames

MIB = 1024 * 1024
DISTINCT_FRAMES = 16


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB
    return rss_bytes() / MIB


def _fast_summary(latencies: list[float], wall: float) -> dict:
    return {"frames": len(latencies), **{f"{k}_ms": v for k, v in percentiles_ms(latencies).items()},
            "mean_ms": float(np.mean(latencies) * 1e3), "frames_per_second": len(latencies) / wall}


def run_speed(preset: Preset, *, prefill_frames: int, measure_frames: int, new_tokens: int, device: str | None = None,
              backend: str = "auto") -> dict:
    model = build_model(preset, device)
    dev = model.device
    frames = camera_frames(DISTINCT_FRAMES, preset.frame_size)
    keyframes_cfg = KeyframeConfig(num_keyframes=3, grid_sizes=preset.grid_sizes)
    cfg = EngineConfig(general_fps=1e6, answers=False, kv_budget_tokens=preset.kv_budget_tokens,
                       max_new_tokens=new_tokens, stop_on_eos=False, keyframes=keyframes_cfg, backend=backend)
    total = prefill_frames + measure_frames
    stream_times = [0.5 * k for k in range(total)]

    # Engine: fast path.
    _reset_peak(dev)
    engine = StreamEngine(model, cfg)
    threshold = engine.threshold
    decisions = []
    for k in range(total):
        if k == prefill_frames:
            _reset_peak(dev)
            context_start, wall = engine.stats()["kv_tokens"], now()
        decisions.append(engine.process_frame(frames[k % DISTINCT_FRAMES], stream_times[k]))
    wall = now() - wall
    measured = decisions[prefill_frames:]
    fast_engine = _fast_summary([d.latency_s for d in measured], wall)
    fast_engine["compute_p50_ms"] = percentiles_ms([d.compute_s for d in measured])["p50"]
    fast_engine["context_tokens"] = [context_start, engine.stats()["kv_tokens"]]

    # Engine: slow path on a fork of that context (first call captures the decode graph: warm-up).
    keyframes = [(frames[k % DISTINCT_FRAMES], stream_times[k]) for k in range(total - 3, total)]
    slow_results = []
    for _ in range(2):
        fork = engine.context.fork()
        request = SlowThinkRequest(keyframes, [("system", "")], max_new_tokens=new_tokens, fork=fork)
        slow_results.append(engine.slow_thinker.generate(request, lambda *_: None))
        fork.state.release()
    slow = slow_results[-1]
    engine_peak = _peak_mib(dev)

    # Concurrency: frames decided while the slow thinker writes (another thread, its own fork).
    concurrent = _concurrent(engine, frames, keyframes, new_tokens, stream_times[-1])

    # Naive loop on the same frames and prompt.
    del engine
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    _reset_peak(dev)
    naive = NaiveStream(model)
    naive_out = []
    for k in range(total):
        if k == prefill_frames:
            wall = now()
        naive_out.append(naive.frame(frames[k % DISTINCT_FRAMES]))
    wall = now() - wall
    fast_naive = _fast_summary([s for _, _, s in naive_out[prefill_frames:]], wall)
    gen = naive_generate(naive, [rgb for rgb, _ in keyframes], new_tokens, keyframes_cfg)
    naive_peak = _peak_mib(dev)

    p_engine = np.array([d.p_interval for d in decisions])
    p_naive = np.array([p for p, _, _ in naive_out])
    top_equal = [d.next_token == top for d, (_, top, _) in zip(decisions, naive_out)]
    same_prefix = next((i for i, (a, b) in enumerate(zip(slow.token_ids, gen["ids"])) if a != b), len(gen["ids"]))
    return {
        "preset": preset.name, "device": device_name(dev), "dtype": str(model.dtype).replace("torch.", ""),
        "torch": torch.__version__, "backend": cfg.backend if backend != "auto" else _backend_name(model, cfg),
        "frame_size": list(preset.frame_size), "tokens_per_frame": model.tokens_per_frame,
        "fast_path": {"engine": fast_engine, "naive": fast_naive,
                      "speedup_p50": fast_naive["p50_ms"] / fast_engine["p50_ms"]},
        "slow_path": {
            "engine": {"time_to_first_token_ms": slow.time_to_first_token * 1e3, "tokens_per_second": slow.tokens_per_second,
                       "new_tokens": slow.num_tokens, "prompt_tokens": slow.prompt_tokens},
            "naive": {"time_to_first_token_ms": gen["time_to_first_token_s"] * 1e3,
                      "tokens_per_second": gen["tokens_per_second"], "new_tokens": len(gen["ids"]),
                      "prompt_tokens": gen["prompt_tokens"]},
            "speedup_tokens_per_second": slow.tokens_per_second / gen["tokens_per_second"],
        },
        "concurrent": concurrent,
        "peak_memory_mib": {"engine": engine_peak, "naive": naive_peak,
                            "kind": "torch.cuda.max_memory_allocated" if dev.type == "cuda" else "process RSS"},
        "equality": {
            "frames_compared": len(decisions),
            "decisions_equal": int(sum(d.respond == (p < threshold or t != model.token_ids.interval)
                                       for d, (p, t, _) in zip(decisions, naive_out))),
            "next_token_equal": int(sum(top_equal)),
            "max_abs_p_interval_diff": float(np.abs(p_engine - p_naive).max()),
            "max_rel_p_interval_diff": float((np.abs(p_engine - p_naive) / np.maximum(p_naive, 1e-30)).max()),
            "generated_tokens_compared": len(gen["ids"]),
            "generated_tokens_equal_prefix": same_prefix,
        },
    }


def _backend_name(model, cfg) -> str:
    from ..engine import _pick_backend

    return _pick_backend(model, cfg).name if model.device.type == "cuda" else "dynamic"


def _concurrent(engine: StreamEngine, frames, keyframes, new_tokens: int, last_time: float) -> dict:
    """Decide frames on this thread while another thread generates on a fork; both timed."""
    fork = engine.context.fork()
    request = SlowThinkRequest(keyframes, [("system", "")], max_new_tokens=new_tokens, fork=fork)
    done = threading.Event()
    result = {}

    def write():
        result["slow"] = engine.slow_thinker.generate(request, lambda *_: None)
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    latencies, k = [], 0
    while not done.is_set():
        k += 1
        latencies.append(engine.process_frame(frames[k % DISTINCT_FRAMES], last_time + 0.5 * k).latency_s)
    thread.join()
    fork.state.release()
    slow = result["slow"]
    return {"frames_decided_during_generation": len(latencies),
            "frame_latency_during_generation_ms": percentiles_ms(latencies),
            "tokens_per_second_during_frames": slow.tokens_per_second}
