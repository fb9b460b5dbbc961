"""The few-rows product (``engine/kernels/few_rows_linear.py``, issue 14) on the Llama-3-8B shapes: FP8 codes and
bf16 weights against cuBLAS.

Parts (``--parts``, in this order; each writes ``<out>/<part>.json`` as it goes):
- ``micro``: per weight shape ``[N, K]`` (fused q/k/v, o, fused gate/up, down, the output head) at 1 and 11 rows:
  first correctness (the kernel against the float64 product and bit-identical on a second call, FP8 codes and bf16
  weights), then microseconds and TB/s of: the kernel on FP8 codes (tuned for the row bucket, as the engine does;
  and with the other upcast), the kernel on bf16 weights (its best tile; the tuning also times cuBLAS and reports
  which the engine would run), cuBLAS bf16 (``F.linear``) and ``torch._scaled_mm`` (activations cast to FP8 too,
  so not the same math: a floor) where it runs. Each product is timed over enough weight copies (distinct memory)
  to pass the L2 cache, replayed from one CUDA graph.
- ``profile``: the preset's backbone on the static backend, per ``--weights`` format (native: the default
  ``linear_kernel='auto'``; fp8): how long the engine build's tile tuning takes, then a generated-token step and
  a decided-frame step (the token and frame graphs, context ``--context`` tokens): wall time per step and
  ``torch.profiler`` over ``--steps`` steps of each: kernels per step and the top ones. ``--preset lionfs-8b``
  profiles the dropping layers' path; with ``--no-dropping`` the same weights without it (issue 14's on/off ratio).

    PYTHONPATH=. python3 scripts/few_rows_kernel_bench.py --out $OUT
    PYTHONPATH=. python3 scripts/few_rows_kernel_bench.py --smoke --out /tmp/fr   # CPU: Triton's interpreter, tiny
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lionfs_ros.engine import EngineConfig
from lionfs_ros.engine.bench.graph_timing import graph_ms
from lionfs_ros.engine.quantization import fp8_linear_reference, quantize_fp8

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
          "head": (128256, 4096)}
SMOKE_SHAPES = {"qkv": (96, 256), "down": (64, 512)}
ROWS = (1, 11)
REPLAYS = 5  # graph replays timed; the median is kept
TOP_KERNELS = 25
TUNE_S = 20.0  # micro: seconds of compiling new tile candidates, all shapes and both weight kinds together


def graph_us(runs: list, device: torch.device) -> float:
    """Median microseconds of one call of ``runs`` (callables; one per weight copy), replayed from one CUDA graph;
    on the CPU, one pass timed by the wall clock."""
    if device.type != "cuda":
        t0 = time.perf_counter()
        for run in runs:
            run()
        return (time.perf_counter() - t0) * 1e6 / len(runs)
    return graph_ms(lambda: [run() for run in runs], device, REPLAYS, warmup_replays=1) * 1e3 / len(runs)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).norm() / ref.norm())


def scaled_mm(x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor):
    """``torch._scaled_mm`` with the weight's per-channel scales (row-wise), else one scale per tensor; rows padded
    to 16 if it refuses fewer. Returns (callable, how) or (None, why not)."""
    xq = x.to(codes.dtype)
    errors = []
    for pad in (x.shape[0], 16 * math.ceil(x.shape[0] / 16)):
        xp = torch.cat([xq, xq.new_zeros(pad - xq.shape[0], xq.shape[1])]) if pad > xq.shape[0] else xq
        for how, sa, sb in (("rowwise", torch.ones(pad, 1, device=x.device), scale[None, :].contiguous()),
                            ("tensorwise", torch.ones((), device=x.device), torch.ones((), device=x.device))):
            def run(xp=xp, sa=sa, sb=sb):
                return torch._scaled_mm(xp, codes.t(), scale_a=sa, scale_b=sb, out_dtype=x.dtype)
            try:
                run()
                return run, f"{how}, {pad} rows"
            except Exception as err:  # noqa: BLE001 - what this torch/GPU refuses is the result
                errors.append(f"{how}/{pad}: {type(err).__name__}: {str(err)[:120]}")
    return None, "; ".join(errors)


def micro(args, device: torch.device, out: dict, save) -> None:
    from lionfs_ros.engine.kernels import few_rows_linear as kernel
    from lionfs_ros.engine.kernels.few_rows_tuning import tune

    dtype = torch.float16 if args.smoke else torch.bfloat16  # the interpreter's tl.dot has no bf16
    l2 = torch.cuda.get_device_properties(device).L2_cache_size if device.type == "cuda" else 0
    out["l2_bytes"] = l2
    deadline = time.monotonic() + TUNE_S
    for name, (n, k) in (SMOKE_SHAPES if args.smoke else SHAPES).items():
        copies = max(2, math.ceil(2 * l2 / (n * k)))  # FP8 copies: twice the L2 in all
        ws = [quantize_fp8(torch.randn(n, k, device=device) * 0.02) for _ in range(copies)]
        bf = [torch.randn(n, k, device=device, dtype=dtype) * 0.02 for _ in range(max(2, math.ceil(l2 / (n * k))))]
        entry = out["shapes"].setdefault(name, {"shape": [n, k], "fp8_copies": copies, "bf16_copies": len(bf)})
        fp8_bytes, bf16_bytes = n * k + 4 * n, 2 * n * k
        for rows in ROWS:
            x = torch.randn(rows, k, device=device, dtype=dtype)
            r = entry.setdefault(f"rows_{rows}", {})
            ref = fp8_linear_reference(x.double(), ws[0])
            ref_bf = x.double() @ bf[0].double().t()
            if args.smoke:  # the interpreter: no tuning, fixed tiles
                cfg = cfg_bf = (1, 32, 128, 4, 4, 2, 0) if rows == 1 else (16, 32, 128, 4, 4, 2, 0)
            else:
                t0 = time.perf_counter()
                r["tune_fp8"] = tune([(w.codes, w.scale) for w in ws], rows, dtype, deadline)
                r["tune_fp8"]["seconds"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                r["tune_bf16"] = tune([(w, None) for w in bf], rows, dtype, deadline)
                r["tune_bf16"]["seconds"] = time.perf_counter() - t0
                cfg = kernel.pick_config(rows, ws[0].codes)
                cfg_bf = tuple(r["tune_bf16"]["best_tile"])  # timed even where cuBLAS won
            checks = {"fp8_kernel": (lambda w, c: kernel.few_rows_linear(x, w.codes, w.scale, config=c), ws, cfg, ref),
                      "bf16_kernel": (lambda w, c: kernel.few_rows_linear(x, w, config=c), bf, cfg_bf, ref_bf)}
            for label, (fn, weights, c, want) in checks.items():
                first, second = fn(weights[0], c), fn(weights[0], c)
                r[label] = {"config": list(c), "rel_error": rel_error(first, want),
                            "bit_identical": bool(torch.equal(first, second))}
                r[label]["ok"] = r[label]["rel_error"] < 1e-2 and r[label]["bit_identical"]
            save()
            timed = {"fp8_kernel": ([lambda w=w: kernel.few_rows_linear(x, w.codes, w.scale, config=cfg) for w in ws],
                                    fp8_bytes),
                     "bf16_kernel": ([lambda w=w: kernel.few_rows_linear(x, w, config=cfg_bf) for w in bf], bf16_bytes),
                     "cublas_bf16": ([lambda w=w: F.linear(x, w) for w in bf], bf16_bytes)}
            flipped = (*cfg[:6], 1 - cfg[6])  # the other upcast (conversion instructions or bit moves)
            if not args.smoke:
                r["fp8_other_upcast"] = {"config": list(flipped), "rel_error": rel_error(
                    kernel.few_rows_linear(x, ws[0].codes, ws[0].scale, config=flipped), ref)}
                timed["fp8_other_upcast"] = ([lambda w=w: kernel.few_rows_linear(x, w.codes, w.scale, config=flipped)
                                              for w in ws], fp8_bytes)
            runs, how = zip(*(scaled_mm(x, w.codes, w.scale) for w in ws))
            r["scaled_mm_how"] = how[0]
            if runs[0] is not None:
                timed["scaled_mm"] = (list(runs), fp8_bytes)
            for label, (runs, nbytes) in timed.items():
                us = graph_us(runs, device)
                r.setdefault(label, {}).update({"us": us, "tb_per_s": nbytes / (us * 1e-6) / 1e12})
                save()
            print(name, rows, {lab: round(r[lab]["us"], 2) for lab in timed}, flush=True)
        del ws, bf


def _profiled(feed_once, steps: int, device: torch.device) -> dict:
    """``torch.profiler`` over ``steps`` calls of ``feed_once``: kernels per step, device us per step, the top ones."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            feed_once()
        sync()
    rows = []
    for evt in prof.key_averages():
        dev_us = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0)
        kernel = device.type == "cuda" and str(evt.device_type).endswith("CUDA")
        if kernel or device.type != "cuda":
            us = dev_us if kernel else evt.self_cpu_time_total
            rows.append({"name": evt.key[:160], "us_per_step": us / steps, "calls_per_step": evt.count / steps})
    rows.sort(key=lambda e: -e["us_per_step"])
    return {"kernels_per_step": sum(e["calls_per_step"] for e in rows),
            "device_us_per_step": sum(e["us_per_step"] for e in rows), "top": rows[:TOP_KERNELS]}


def profile(args, device: torch.device, out: dict, save) -> None:
    """Per weight format: the engine build's tuning time, then the token step and the decided-frame step of the
    main context (``--context`` tokens in): wall ms per step, and the profiler's kernels per step."""
    from lionfs_ros.engine import static_decoder
    from lionfs_ros.engine.backends import StaticBackend
    from lionfs_ros.engine.bench.presets import PRESETS, build_model

    preset = PRESETS["tiny" if args.smoke else args.preset]
    model = build_model(preset, str(device))
    tune_layers, tuned = static_decoder.tune_layers, {}

    def timed_tune(*a, **kw):  # the engine build's tuning, timed
        t0 = time.perf_counter()
        tuned["report"] = tune_layers(*a, **kw)
        tuned["seconds"] = time.perf_counter() - t0
        return tuned["report"]

    static_decoder.tune_layers = timed_tune
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out["preset"] = preset.name
    if args.no_dropping:  # the same weights with the dropping routers off (as `lionfs bench`'s +nodrop)
        model.token_dropping = None
    out["dropping"] = model.token_dropping is not None
    for weights in args.weights.split(","):
        if weights == "fp8" and device.type != "cuda":
            continue
        tuned.clear()
        t0 = time.perf_counter()
        cfg = EngineConfig(weights=weights, kv_budget_tokens=preset.kv_budget_tokens, compile=not args.smoke,
                           attention="triton", answers=False, max_new_tokens=64)
        backend = StaticBackend(model, cfg)
        entry = out.setdefault(weights, {})
        entry.update({"build_s": time.perf_counter() - t0, "tune_s": tuned.get("seconds"),
                      "attention_run": getattr(backend.fused, "attention", None),
                      "compile_fallback": getattr(backend.fused, "compile_fallback", None)})
        save()
        state = backend.main
        state.warm_up()
        gen = torch.Generator().manual_seed(0)
        text = torch.randint(3, min(400, model.token_ids.placeholder), (args.context,), generator=gen).tolist()
        for t in text:  # one token at a time: the token graph, no new shapes to compile
            state.feed([t])
        frame_ids = model.formatter.frame_ids(after_frame=True)
        frame = torch.randn(model.tokens_per_frame, model.llm.config.hidden_size, device=device, dtype=model.dtype)
        steps = {"token": lambda state=state: state.feed([text[0]]),
                 "frame": lambda state=state: state.feed(frame_ids, frame)}
        for name, feed_once in steps.items():
            feed_once()
            sync()
            t0 = time.perf_counter()
            for _ in range(args.steps * 4):
                feed_once()
            sync()
            entry[name] = {"step_ms": (time.perf_counter() - t0) * 1e3 / (args.steps * 4), **_profiled(feed_once, args.steps, device)}
            entry[name]["context_tokens"] = state.num_tokens
            save()
        del backend, state, steps, feed_once
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="micro,profile")
    parser.add_argument("--preset", default="llama3-8b")
    parser.add_argument("--context", type=int, default=400, help="profile: context tokens before the timed steps")
    parser.add_argument("--steps", type=int, default=5, help="profile: steps of each kind under the profiler")
    parser.add_argument("--weights", default="native,fp8", help="profile: the engine's weight formats, in turn")
    parser.add_argument("--no-dropping", action="store_true", help="profile: a preset's dropping routers off")
    parser.add_argument("--smoke", action="store_true", help="CPU, Triton's interpreter, tiny shapes and preset")
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    if args.smoke:
        args.context, args.steps = 24, 2
    device = torch.device("cpu" if args.smoke else "cuda")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for part in args.parts.split(","):
        out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "shapes": {}} if part == "micro" else {}
        path = Path(args.out) / f"{part}.json"

        def save(out=out, path=path):
            path.write_text(json.dumps(out, indent=1))

        with torch.no_grad():
            {"micro": micro, "profile": profile}[part](args, device, out, save)
        save()


if __name__ == "__main__":
    main()
