"""Speed: the engine's fast and slow paths against the naive loop, measured in one run, same inputs.

Fast path: decided frames (camera-sized RGB in, decision out: preprocessing, vision, LLM step and
the decision included), after a warm-up that fills the context to ``prefill_frames`` frames.
Slow path: the thinking prompt for the last keyframes on that context, then ``new_tokens`` greedy
tokens (EOS ignored so both sides decode the same length): time to first token and decoding
tokens per second. Equality: per frame P(interval) and the most likely token, and the generated
ids; where they differ, the naive side's top-1/top-2 logit margin shows whether it was a near tie.
Concurrency: frames decided while the slow thinker writes on its fork, from another thread.
Each engine variant (``compile`` off/on, ``attention`` sdpa/split) is measured in turn on the same model.
"""
from __future__ import annotations

import gc
import platform
import sys
import threading
import traceback

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
PROGRESS_EVERY = 50  # frames between progress lines
BREAKDOWN_REPS = 20
CONCURRENT_DEADLINE_S = 60.0
_T0 = now()


def log(message: str) -> None:
    """Progress on stderr (stdout carries the JSON)."""
    print(f"[bench {now() - _T0:7.1f} s] {message}", file=sys.stderr, flush=True)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device):
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device) -> float:
    return torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else rss_bytes() / MIB


def _fast_summary(latencies: list[float], wall: float) -> dict:
    return {"frames": len(latencies), **{f"{k}_ms": v for k, v in percentiles_ms(latencies).items()},
            "mean_ms": float(np.mean(latencies) * 1e3), "frames_per_second": len(latencies) / wall}


VARIANTS = {  # name -> EngineConfig fields
    "eager": {"attention": "sdpa"},
    "graphs": {"attention": "sdpa"},
    "graphs+compile": {"compile": True, "attention": "sdpa"},
    "graphs+split": {"attention": "split"},
    "graphs+compile+split": {"compile": True, "attention": "split"},
}


def run_speed(preset: Preset, *, prefill_frames: int, measure_frames: int, new_tokens: int, device: str | None = None,
              backend: str = "auto", variants: tuple[str, ...] = ("eager",), concurrent_variant: str | None = None,
              on_update=None) -> dict:
    """``on_update(result)`` is called after every phase with the result so far (so a crash keeps what was measured)."""
    log(f"building {preset.name}")
    model = build_model(preset, device)
    dev = model.device
    log(f"model built on {dev} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters)")
    frames = camera_frames(DISTINCT_FRAMES, preset.frame_size)
    keyframes_cfg = KeyframeConfig(num_keyframes=3, grid_sizes=preset.grid_sizes)
    total = prefill_frames + measure_frames
    times = [0.5 * k for k in range(total)]
    keyframes = [(frames[k % DISTINCT_FRAMES], times[k]) for k in range(total - 3, total)]
    result = {
        "preset": preset.name, "device": device_name(dev), "dtype": str(model.dtype).replace("torch.", ""),
        "torch": torch.__version__, "frame_size": list(preset.frame_size), "tokens_per_frame": model.tokens_per_frame,
        "prefill_frames": prefill_frames, "variants": {},
    }
    update = on_update or (lambda _: None)

    naive = _naive(model, frames, prefill_frames, total, keyframes, keyframes_cfg, new_tokens)
    result["naive"] = {"fast": naive["fast"], "slow": naive["slow"], "peak_memory_mib": naive["peak_memory_mib"]}
    update(result)
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    concurrent_variant = concurrent_variant or variants[-1]
    for name in variants:
        cfg = EngineConfig(general_fps=1e6, answers=False, kv_budget_tokens=preset.kv_budget_tokens,
                           max_new_tokens=new_tokens, stop_on_eos=False, keyframes=keyframes_cfg, backend=backend,
                           **VARIANTS[name])

        def publish(partial: dict, name=name) -> None:
            result["variants"][name] = _equality(dict(partial), naive, model)
            _summarize(result, naive, dev.type == "cuda")
            update(result)

        try:
            _engine_variant(model, cfg, frames, times, prefill_frames, keyframes, new_tokens,
                            concurrent=name == concurrent_variant, publish=publish)
        except Exception as err:  # a variant that cannot run is reported, the rest go on
            entry = result["variants"].setdefault(name, {})
            entry["error"] = f"{type(err).__name__}: {err}"
            entry["traceback"] = traceback.format_exc(limit=6)
            log(f"variant {name} failed: {err}")
            update(result)
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return result


def _summarize(result: dict, naive: dict, cuda: bool) -> None:
    ok = {k: v for k, v in result["variants"].items() if "fast" in v and "slow" in v}
    if not ok:
        return
    best = min(ok, key=lambda k: ok[k]["fast"]["p50_ms"])
    b = ok[best]
    result["best_variant"] = best
    result["fast_path"] = {"engine": b["fast"], "naive": naive["fast"],
                           "speedup_p50": naive["fast"]["p50_ms"] / b["fast"]["p50_ms"]}
    result["slow_path"] = {"engine": b["slow"], "naive": naive["slow"],
                           "speedup_tokens_per_second": b["slow"]["tokens_per_second"] / naive["slow"]["tokens_per_second"]}
    kind = "torch.cuda.max_memory_allocated" if cuda else "process RSS"
    result["peak_memory_mib"] = {"engine": b["peak_memory_mib"], "naive": naive["peak_memory_mib"], "kind": kind}


def _engine_variant(model, cfg, frames, times, prefill_frames, keyframes, new_tokens, concurrent: bool, publish) -> None:
    dev = model.device
    _reset_peak(dev)
    started = now()
    engine = StreamEngine(model, cfg)
    log(f"engine built ({engine.backend.name} backend, compile={cfg.compile}, attention={cfg.attention})")
    decisions = []
    for k in range(len(times)):
        if k == prefill_frames:
            context_start, wall = engine.stats()["kv_tokens"], now()
        decisions.append(engine.process_frame(frames[k % DISTINCT_FRAMES], times[k]))
        if k % PROGRESS_EVERY == 0:
            log(f"engine frame {k}: {decisions[-1].latency_s * 1e3:.1f} ms")
    wall = now() - wall
    measured = decisions[prefill_frames:]
    fast = _fast_summary([d.latency_s for d in measured], wall)
    fast["compute_p50_ms"] = percentiles_ms([d.compute_s for d in measured])["p50"]
    fast["context_tokens"] = [context_start, engine.stats()["kv_tokens"]]
    fast["first_frame_ms"] = decisions[0].latency_s * 1e3  # graph capture (and compilation) happen here
    slow_runs = []
    for _ in range(2):  # the first captures the one-token graph: a warm-up
        fork = engine.context.fork()
        request = SlowThinkRequest(keyframes, [("system", "")], max_new_tokens=new_tokens, fork=fork)
        slow_runs.append(engine.slow_thinker.generate(request, lambda *_: None))
        fork.state.release()
        log(f"engine slow path: {slow_runs[-1].tokens_per_second:.1f} tokens/s")
    slow = slow_runs[-1]
    out = {
        "backend": engine.backend.name, "compile": cfg.compile, "attention": cfg.attention,
        "fast": fast,
        "slow": {"time_to_first_token_ms": slow.time_to_first_token * 1e3, "tokens_per_second": slow.tokens_per_second,
                 "new_tokens": slow.num_tokens, "prompt_tokens": slow.prompt_tokens,
                 "first_run_tokens_per_second": slow_runs[0].tokens_per_second},
        "peak_memory_mib": _peak_mib(dev),
        "_decisions": decisions, "_tokens": slow.token_ids,
    }
    publish(out)
    log("breakdown")
    out["breakdown_ms"] = _breakdown(engine, frames)
    publish(out)
    if concurrent:
        log("concurrent")
        out["concurrent"] = _concurrent(engine, frames, keyframes, new_tokens, times[-1])
        log(f"concurrent: {out['concurrent']}")
    out["setup_and_measure_s"] = now() - started
    publish(out)


def _breakdown(engine: StreamEngine, frames) -> dict:
    """Median time of each stage of a decided frame, run on its own (synchronized)."""
    model, dev = engine.model, engine.model.device
    enc, state = engine.encoder, engine.context.state
    stages = {"resize_and_tower": [], "connector": [], "llm_step": [], "decide": []}
    with torch.no_grad():
        for k in range(BREAKDOWN_REPS):
            rgb = frames[k % DISTINCT_FRAMES]
            t0 = now()
            tokens = enc.general_tokens(rgb)
            _sync(dev)
            t1 = now()
            embeds = model.embed_frames(tokens)[0] if not enc.has_ego else enc.encode(rgb)
            _sync(dev)
            t2 = now()
            logits = state.feed(model.formatter.frame_ids(after_frame=True), embeds)
            _sync(dev)
            t3 = now()
            float(model.p_interval(logits))
            t4 = now()
            for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                stages[key].append(value)
    return {key: float(np.median(values) * 1e3) for key, values in stages.items()}


def _concurrent(engine: StreamEngine, frames, keyframes, new_tokens: int, last_time: float) -> dict:
    """Decide frames on this thread while another thread generates on a fork; both timed."""
    fork = engine.context.fork()
    request = SlowThinkRequest(keyframes, [("system", "")], max_new_tokens=new_tokens, fork=fork)
    done = threading.Event()
    result: dict = {}

    def write():
        try:
            result["slow"] = engine.slow_thinker.generate(request, lambda *_: None)
        except Exception as err:  # reported in the JSON; the frame loop below must end either way
            result["error"] = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=6)}"
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    latencies, k, deadline = [], 0, now() + CONCURRENT_DEADLINE_S
    while not done.is_set() and now() < deadline and k < 4 * new_tokens:
        k += 1
        latencies.append(engine.process_frame(frames[k % DISTINCT_FRAMES], last_time + 0.5 * k).latency_s)
    thread.join(CONCURRENT_DEADLINE_S)
    fork.state.release()
    out = {"frames_decided_during_generation": len(latencies),
           "frame_latency_during_generation_ms": percentiles_ms(latencies)}
    if "slow" in result:
        out["tokens_per_second_during_frames"] = result["slow"].tokens_per_second
    else:
        out["error"] = result.get("error", "the slow thinker did not finish in time")
    return out


def _naive(model, frames, prefill_frames, total, keyframes, keyframes_cfg, new_tokens) -> dict:
    dev = model.device
    _reset_peak(dev)
    naive = NaiveStream(model)
    out = []
    for k in range(total):
        if k == prefill_frames:
            wall = now()
        out.append(naive.frame(frames[k % DISTINCT_FRAMES]))
        if k % PROGRESS_EVERY == 0:
            log(f"naive frame {k}: {out[-1][3] * 1e3:.1f} ms")
    wall = now() - wall
    fast = _fast_summary([s for *_, s in out[prefill_frames:]], wall)
    rgbs = [rgb for rgb, _ in keyframes]
    runs = [naive_generate(naive, rgbs, new_tokens, keyframes_cfg, rewind=True) for _ in range(2)]  # first: warm-up
    gen = runs[-1]
    log(f"naive slow path: {gen['tokens_per_second']:.1f} tokens/s")
    return {
        "fast": fast, "frames": out, "gen": gen, "peak_memory_mib": _peak_mib(dev),
        "slow": {"time_to_first_token_ms": gen["time_to_first_token_s"] * 1e3,
                 "tokens_per_second": gen["tokens_per_second"], "new_tokens": len(gen["ids"]),
                 "prompt_tokens": gen["prompt_tokens"], "first_run_tokens_per_second": runs[0]["tokens_per_second"]},
    }


def _equality(variant: dict, naive: dict, model) -> dict:
    decisions, tokens = variant.pop("_decisions"), variant.pop("_tokens")
    frames = naive["frames"]
    interval = model.token_ids.interval
    p_engine = np.array([d.p_interval for d in decisions])
    p_naive = np.array([p for p, *_ in frames])
    mismatch = [margin for d, (p, top, margin, _) in zip(decisions, frames) if d.next_token != top]
    same = [d.respond == (p < model.config.stream.interval_threshold or top != interval)
            for d, (p, top, _, _) in zip(decisions, frames)]
    gen = naive["gen"]
    prefix = next((i for i, (a, b) in enumerate(zip(tokens, gen["ids"])) if a != b), len(gen["ids"]))
    variant["equality"] = {
        "frames_compared": len(decisions), "decisions_equal": int(sum(same)),
        "next_token_equal": len(decisions) - len(mismatch),
        "next_token_mismatch_max_naive_margin": max(mismatch) if mismatch else None,
        "max_abs_p_interval_diff": float(np.abs(p_engine - p_naive).max()),
        "generated_tokens_compared": len(gen["ids"]), "generated_tokens_equal_prefix": prefix,
        "naive_margin_at_first_difference": gen["margins"][prefix] if prefix < len(gen["margins"]) else None,
    }
    return variant
