"""Speed: the engine's fast and slow paths against the naive loop, measured in one run, same inputs.

Fast path: decided frames (camera-sized RGB in, decision out: preprocessing, vision, LLM step and
the decision included), after a warm-up that fills the context to ``prefill_frames`` decided
frames. With an egocentric tower the camera runs at the preset's ``camera_fps`` (8): between two
decided frames come ego-only frames (the ego tower alone), timed on their own (synchronized).
Slow path: the thinking prompt for the last keyframes on that context (the same prompt on both
sides: the naive loop is given the ids the engine's slow thinker builds), then ``new_tokens``
greedy tokens (EOS ignored so both sides decode the same length): time to first token and
decoding tokens per second. Equality: per decided frame P(interval) and the most likely token,
and the generated ids (how many positions agree, the common prefix, and the naive side's
top-1/top-2 logit margin at the first difference: a bf16 near-tie or not).
Concurrency: frames decided while the slow thinker writes on its fork, from another thread.
The engines are built with the camera's size (``EngineConfig.camera_size``: the resize compiled and the tower and
fusion graphs captured at the build; ``camera_size=False``: not, so the first decided frame makes them); each
variant reports its build time (``engine_build_ms``) and its first decided frame (``fast.first_frame_ms``) apart.
Each engine variant (``compile`` off/on, ``attention`` sdpa/split/triton, token dropping off, FP8 weights, cuBLAS
for every bf16 product) is measured in turn on the same model; ``+cublas`` variants run ``linear_kernel='torch'``
(the default 'auto' runs each bf16 product with the faster of cuBLAS and the few-rows kernel); ``+nodrop``
variants run the same weights with the dropping routers
switched off (the naive loop runs the model as built, so they are not compared with it); ``+fp8``
variants run the decoder's projections as weight-only FP8 (``quantization.py``), compared with the naive
loop (the model's bf16 function) and with their bf16 twin (the same name without ``+fp8``) when it ran.
The LLM step is reported beside the weight-matrix floor measured in the same run (``floor.py``): bf16,
and FP8 when an FP8 variant runs.
"""
from __future__ import annotations

import gc
import itertools
import platform
import sys
import threading
import traceback

import numpy as np
import torch

from lionfs_ros.model.thinking_template import build_thinking_inputs

from ..config import EngineConfig, KeyframeConfig
from ..engine import StreamEngine
from ..slow_thinker import LocalSlowThinker, SlowThinkRequest
from ..timing import now, percentiles_ms, rss_bytes
from .equality import naive_equality, no_equality, twin_equality
from .floor import copy_floor, weight_floor
from .naive import NaiveStream, naive_generate
from .presets import GENERAL_FPS, Preset, build_model, camera_frames
from .variants import BF16_HEAD, FP8, NODROP, variant_fields

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


def run_speed(preset: Preset, *, prefill_frames: int, measure_frames: int, new_tokens: int, device: str | None = None,
              backend: str = "auto", variants: tuple[str, ...] = ("eager",), concurrent_variant: str | None = None,
              camera_size: bool = True, on_update=None) -> dict:
    """``prefill_frames`` / ``measure_frames``: decided frames. ``on_update(result)`` is called after every phase
    with the result so far (so a crash keeps what was measured)."""
    log(f"building {preset.name}")
    model = build_model(preset, device)
    dev = model.device
    log(f"model built on {dev} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters)")
    frames = camera_frames(DISTINCT_FRAMES, preset.frame_size)
    keyframes_cfg = KeyframeConfig(num_keyframes=3, grid_sizes=preset.grid_sizes)
    ratio = round(preset.camera_fps / GENERAL_FPS) if model.ego is not None else 1  # camera frames per decided one
    total = (prefill_frames + measure_frames) * ratio
    times = [k / (GENERAL_FPS * ratio) for k in range(total)]
    decided = [k for k in range(total) if k % ratio == 0]
    keyframes = [(frames[k % DISTINCT_FRAMES], times[k]) for k in decided[-3:]]
    base = dict(general_fps=GENERAL_FPS if ratio > 1 else 1e6, answers=False, kv_budget_tokens=preset.kv_budget_tokens,
                max_new_tokens=new_tokens, stop_on_eos=False, keyframes=keyframes_cfg, backend=backend, slow_path="on",
                camera_size=preset.frame_size[::-1] if camera_size else None)  # frame_size (h, w) -> (width, height)
    result = {
        "preset": preset.name, "device": device_name(dev), "dtype": str(model.dtype).replace("torch.", ""),
        "torch": torch.__version__, "frame_size": list(preset.frame_size), "tokens_per_frame": model.tokens_per_frame,
        "camera_fps": GENERAL_FPS * ratio, "decided_fps": GENERAL_FPS, "prefill_frames": prefill_frames,
        "camera_size": list(base["camera_size"]) if camera_size else None,  # given to the engines (width, height)
        "token_dropping": None if model.token_dropping is None else {
            "layers": model.token_dropping.layers, "keep_per_frame": model.token_dropping.keep},
        "variants": {},
    }
    update = on_update or (lambda _: None)
    thinker = LocalSlowThinker(model, EngineConfig(**base))
    prompt = build_thinking_inputs(model, [rgb for rgb, _ in keyframes], after_stream=True, config=thinker.cfg.keyframes,
                                   template=thinker.template, proposer=thinker.proposer, think=True)
    naive = _naive(model, frames, ratio, prefill_frames, total, prompt, new_tokens)
    result["naive"] = {k: naive[k] for k in ("fast", "ego_only", "slow", "peak_memory_mib") if k in naive}
    update(result)
    if dev.type == "cuda":
        result["weight_floor"] = {"frame_step": weight_floor(model.llm, model.tokens_per_frame + 1),
                                  "token_step": weight_floor(model.llm, 1), "copy": copy_floor(dev)}
        update(result)
    _free(dev)
    concurrent_variant = concurrent_variant or variants[-1]
    dropping = model.token_dropping
    decided_by: dict[str, list] = {}  # variant -> its decisions (FP8 variants are compared with their bf16 twin)
    for name in variants:
        fields, drop_on = variant_fields(name)
        cfg = EngineConfig(**{**base, **fields})

        def publish(partial: dict, name=name, compare=drop_on or dropping is None) -> None:
            decided_by[name] = partial.get("_decisions", decided_by.get(name))
            entry = naive_equality(dict(partial), naive, model) if compare else no_equality(dict(partial))
            twin = name.replace(BF16_HEAD, "").replace(FP8, "")
            if FP8 in name and decided_by.get(twin) and decided_by[name]:
                entry["equality_vs_bf16_engine"] = twin_equality(decided_by[name], decided_by[twin], twin)
            result["variants"][name] = entry
            _summarize(result, naive, dev.type == "cuda")
            update(result)

        model.token_dropping = dropping if drop_on else None
        try:
            _engine_variant(model, cfg, frames, times, decided, prefill_frames, keyframes, new_tokens,
                            concurrent=name == concurrent_variant, publish=publish)
        except Exception as err:  # a variant that cannot run is reported, the rest go on
            entry = result["variants"].setdefault(name, {})
            entry["error"] = f"{type(err).__name__}: {err}"
            entry["traceback"] = traceback.format_exc(limit=6)
            log(f"variant {name} failed: {err}")
            update(result)
        finally:
            model.token_dropping = dropping
        _free(dev)
    if dev.type == "cuda":  # what the engines multiplied, with their tuned picks (tuning is kept per process)
        kinds = ["native"] + (["fp8"] if any(FP8 in name for name in variants) else [])
        for kind, (label, rows) in itertools.product(kinds, (("frame_step", model.tokens_per_frame + 1),
                                                             ("token_step", 1))):
            prefix = "engine_" if kind == "native" else "fp8_"
            result["weight_floor"][prefix + label] = weight_floor(model.llm, rows, kind, matrices="engine")
            _free(dev)
        _summarize(result, naive, True)
        update(result)
    return result


def _free(dev) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _summarize(result: dict, naive: dict, cuda: bool) -> None:
    ok = {k: v for k, v in result["variants"].items() if "fast" in v and "slow" in v}
    on = {k: v for k, v in ok.items() if NODROP not in k and FP8 not in k}
    fp8 = {k: v for k, v in ok.items() if NODROP not in k and FP8 in k}
    if fp8:
        best = min(fp8, key=lambda k: fp8[k]["fast"]["p50_ms"])
        b = fp8[best]
        summary = {"variant": best, "fast": b["fast"], "slow": b["slow"], "equality": b.get("equality"),
                   "equality_vs_bf16_engine": b.get("equality_vs_bf16_engine")}
        if "ego_only" in b:
            summary["ego_only"] = b["ego_only"]
        floor = result.get("weight_floor", {}).get("fp8_frame_step", {})  # the FP8 engine's own products
        if "ms" in floor and "breakdown_ms" in b:
            summary["llm_step_over_fp8_floor"] = {"llm_step_ms": b["breakdown_ms"]["llm_step"], "floor_ms": floor["ms"],
                                                  "ratio": b["breakdown_ms"]["llm_step"] / floor["ms"]}
        result["fp8"] = summary
    if not on:
        return
    best = min(on, key=lambda k: on[k]["fast"]["p50_ms"])
    b = on[best]
    result["best_variant"] = best
    result["fast_path"] = {"engine": b["fast"], "naive": naive["fast"],
                           "speedup_p50": naive["fast"]["p50_ms"] / b["fast"]["p50_ms"]}
    if "ego_only" in b:
        result["ego_only_frame"] = {"engine": b["ego_only"], "naive": naive["ego_only"]}
    result["slow_path"] = {"engine": b["slow"], "naive": naive["slow"],
                           "speedup_tokens_per_second": b["slow"]["tokens_per_second"] / naive["slow"]["tokens_per_second"]}
    kind = "torch.cuda.max_memory_allocated" if cuda else "process RSS"
    result["peak_memory_mib"] = {"engine": b["peak_memory_mib"], "naive": naive["peak_memory_mib"], "kind": kind}
    off = {k: k.replace(FP8, "") + NODROP + (FP8 if k.endswith(FP8) else "") for k in {**on, **fp8}}  # same, routers off
    ratios = {k: ok[k]["fast"]["p50_ms"] / ok[off[k]]["fast"]["p50_ms"] for k in off if off[k] in ok}
    if ratios and result.get("token_dropping"):
        result["dropping_on_over_off_p50"] = ratios
    floors = result.get("weight_floor", {})
    for key, floor in (("llm_step_over_floor", floors.get("frame_step", {})),  # the model's modules by cuBLAS
                       ("llm_step_over_engine_floor", floors.get("engine_frame_step", {}))):  # what the engine runs
        if "ms" in floor and "breakdown_ms" in b:
            result[key] = {"llm_step_ms": b["breakdown_ms"]["llm_step"], "floor_ms": floor["ms"],
                           "ratio": b["breakdown_ms"]["llm_step"] / floor["ms"]}


def _engine_variant(model, cfg, frames, times, decided, prefill_frames, keyframes, new_tokens, concurrent: bool,
                    publish) -> None:
    dev = model.device
    _reset_peak(dev)
    started = now()
    engine = StreamEngine(model, cfg)
    _sync(dev)
    build_ms = (now() - started) * 1e3
    log(f"engine built in {build_ms:.0f} ms ({engine.backend.name} backend, compile={cfg.compile},"
        f" attention={cfg.attention}, dropping={model.token_dropping is not None})")
    decisions, ego_only, is_decided = [], [], set(decided)
    first_measured = decided[prefill_frames]
    for k in range(len(times)):
        if k == first_measured:
            context_start, wall = engine.stats()["kv_tokens"], now()
        t0 = now()
        decision = engine.process_frame(frames[k % DISTINCT_FRAMES], times[k])
        if (decision is not None) != (k in is_decided):
            raise RuntimeError(f"camera frame {k} at {times[k]:.3f} s: the engine's rate gate and the bench disagree")
        if decision is None:
            _sync(dev)  # an ego-only frame returns before its GPU work ends: time all of it
            if k > first_measured:
                ego_only.append(now() - t0)
            continue
        decisions.append(decision)
        if len(decisions) % PROGRESS_EVERY == 1:
            log(f"engine frame {k}: {decision.latency_s * 1e3:.1f} ms")
    wall = now() - wall
    measured = decisions[prefill_frames:]
    fast = _fast_summary([d.latency_s for d in measured], wall)
    fast["compute_p50_ms"] = percentiles_ms([d.compute_s for d in measured])["p50"]
    fast["context_tokens"] = [context_start, engine.stats()["kv_tokens"]]
    fast["first_frame_ms"] = decisions[0].latency_s * 1e3  # without camera_size: resize compiled, graphs captured here
    slow_runs = []
    for _ in range(2):  # the first captures the one-token graph: a warm-up
        fork = engine.context.fork()
        request = SlowThinkRequest(keyframes, [("system", "")], max_new_tokens=new_tokens, fork=fork)
        slow_runs.append(engine.slow_thinker.generate(request, lambda *_: None))
        fork.state.release()
        log(f"engine slow path: {slow_runs[-1].tokens_per_second:.1f} tokens/s")
    slow = slow_runs[-1]
    st = engine.slow_thinker
    prompt = build_thinking_inputs(model, [rgb for rgb, _ in keyframes], after_stream=True, config=st.cfg.keyframes,
                                   template=st.template, proposer=st.proposer, think=st.thinks(request))
    fused = getattr(getattr(engine.backend, "main", None), "fused", None)  # the static backend's decoder
    out = {
        "backend": engine.backend.name, "compile": cfg.compile, "attention": cfg.attention, "weights": cfg.weights,
        "dropping": model.token_dropping is not None,
        "compile_fallback": getattr(fused, "compile_fallback", None),
        "attention_run": getattr(fused, "attention", None),  # 'split' where 'triton' could not run here
        "attention_fallback": getattr(fused, "attention_fallback", None),
        "tower_attention": [[getattr(t.forward, "attention_run", None), getattr(t.forward, "attention_fallback", None)]
                            for t in engine.backend.towers() if t is not None],  # (general, ego): run, why not triton
        "route_kernels": getattr(fused, "route_kernels", None) is not None,  # kernels/token_routing.py ran
        "decision_fallback": engine.fast.decision_fallback,  # None: kernels/stream_decision.py decided
        "linear_kernel": cfg.linear_kernel, "linear_fallback": getattr(fused, "linear_fallback", None),
        "fp8_weight_bytes": getattr(fused, "fp8_bytes", None), "linear_tuning": getattr(fused, "linear_tuning", None),
        "engine_build_ms": build_ms, "fast": fast,
        "slow": {"time_to_first_token_ms": slow.time_to_first_token * 1e3, "tokens_per_second": slow.tokens_per_second,
                 "new_tokens": slow.num_tokens, "prompt_tokens": slow.prompt_tokens,
                 "first_run_tokens_per_second": slow_runs[0].tokens_per_second},
        "peak_memory_mib": _peak_mib(dev),
        "_decisions": decisions, "_tokens": slow.token_ids, "_prompt_ids": prompt.input_ids.tolist(),
    }
    if ego_only:
        out["ego_only"] = _ego_summary(ego_only)
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


def _ego_summary(seconds: list[float]) -> dict:
    return {"frames": len(seconds), **{f"{k}_ms": v for k, v in percentiles_ms(seconds).items()},
            "mean_ms": float(np.mean(seconds) * 1e3)}


def _breakdown(engine: StreamEngine, frames) -> dict:
    """Median time of each stage of a decided frame, run on its own (synchronized)."""
    model, dev = engine.model, engine.model.device
    enc, state = engine.encoder, engine.context.state
    stages = {"resize_and_tower": [], "connector": [], "llm_step": [], "decide": []}
    if enc.has_ego:
        stages["ego_tower"], stages["both_towers"] = [], []
    with torch.no_grad():
        for k in range(BREAKDOWN_REPS):
            rgb = frames[k % DISTINCT_FRAMES]
            t0 = now()
            tokens = enc.general_tokens(rgb)
            _sync(dev)
            t1 = now()
            if enc.has_ego:  # the decided frame's own ego tower, then the connectors and the aggregation router
                enc.add_ego(rgb)
                _sync(dev)
                stages["ego_tower"].append(now() - t1)
                t1 = now()
                embeds = enc.fuse(tokens, enc.ego_window())
            else:
                embeds = enc.fuse(tokens, None)
            _sync(dev)
            t2 = now()
            logits = state.feed(model.formatter.frame_ids(after_frame=True), embeds)
            _sync(dev)
            t3 = now()
            engine.fast.decide(logits)  # the engine's rule, read back to the host
            t4 = now()
            for key, value in zip(("resize_and_tower", "connector", "llm_step", "decide"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                stages[key].append(value)
            if enc.has_ego:  # both towers as a decided frame runs them (graphed towers: one upload)
                t0 = now()
                enc.both_towers(rgb)
                _sync(dev)
                stages["both_towers"].append(now() - t0)
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


def _naive(model, frames, ratio, prefill_frames, total, prompt, new_tokens) -> dict:
    dev = model.device
    _reset_peak(dev)
    naive = NaiveStream(model)
    out, ego_only = [], []
    first_measured = prefill_frames * ratio
    for k in range(total):
        if k == first_measured:
            wall = now()
        rgb = frames[k % DISTINCT_FRAMES]
        if k % ratio:
            seconds = naive.ego_frame(rgb)
            if k > first_measured:
                ego_only.append(seconds)
            continue
        out.append(naive.frame(rgb))
        if len(out) % PROGRESS_EVERY == 1:
            log(f"naive frame {k}: {out[-1][3] * 1e3:.1f} ms")
    wall = now() - wall
    fast = _fast_summary([s for *_, s in out[prefill_frames:]], wall)
    runs = [naive_generate(naive, prompt, new_tokens) for _ in range(2)]  # the first: a warm-up
    gen = runs[-1]
    log(f"naive slow path: {gen['tokens_per_second']:.1f} tokens/s")
    result = {
        "fast": fast, "frames": out, "gen": gen, "peak_memory_mib": _peak_mib(dev),
        "slow": {"time_to_first_token_ms": gen["time_to_first_token_s"] * 1e3,
                 "tokens_per_second": gen["tokens_per_second"], "new_tokens": len(gen["ids"]),
                 "prompt_tokens": gen["prompt_tokens"], "first_run_tokens_per_second": runs[0]["tokens_per_second"]},
    }
    if ego_only:
        result["ego_only"] = _ego_summary(ego_only)
    return result
