"""The vision towers and the exact resize on the graph path, old vs new in one run (issues 14 and 19).

Towers of the bench presets with random weights in bf16 (SigLIP-L/16-384; the CLIP-B/16-224 egocentric
stand-in), 640x480 camera frames. Parts (``--parts``, in this order; each writes ``towers.json`` as it ends):
- ``correctness``: the device resize (single and ``resize_many``) equals Pillow bit for bit, new and old; the
  tokens of the HF forward (bf16), the fused tower eager and compiled, the graphed single-frame path from RGB
  and the graphed batch, each against an fp32 copy of the tower (max abs diff) and against the HF bf16 forward;
- ``timings``: per batch size (1, 2, 4, 8, 16) the replay of the old graph (HF forward) and of the new ones
  (fused eager, fused compiled, compiled without the GELU epilogue), the resize of a round (old: pageable
  upload + dense float64 products; new: pinned upload + int32 band passes), and the whole call from RGB
  frames; SDPA backends at the tower's shape;
- ``profile``: ``torch.profiler`` of one eager forward (old HF, new fused) at one frame: top GPU operators;
- ``frame``: a decided frame's preprocessing, both towers: host copy into the pinned buffer, upload, each resize
  with plain vs compiled passes, both towers called one after the other (two uploads) vs ``pair`` (one upload,
  side by side).

    PYTHONPATH=. python3 scripts/tower_bench.py --out $OUT              # CUDA, about 60-90 s
    PYTHONPATH=. python3 scripts/tower_bench.py --smoke --device cpu    # tiny towers on the CPU (no graphs)
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from lionfs_ros.engine.bench.presets import CLIP_B16, SIGLIP_L16_384, camera_frames
from lionfs_ros.engine.fused_tower import FusedTower
from lionfs_ros.model.configuration_lionfs import VisionConfig
from lionfs_ros.model.image_processing import DeviceImageProcessor, ExactResize, filter_band
from lionfs_ros.model.vision import VisionEncoder, load_vision_tower

TOWERS = {"siglip_l16_384": (SIGLIP_L16_384, "pooler"), "clip_b16_224": (CLIP_B16, "cls")}
SMOKE_TOWERS = {
    "siglip_tiny": (dict(SIGLIP_L16_384, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, image_size=64), "pooler"),
    "clip_tiny": (dict(CLIP_B16, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       image_size=64), "cls"),
}
BATCHES = (1, 2, 4, 8, 16)
CAMERA = (480, 640)
CHECK_FRAMES = 4
TOP_OPERATORS = 15


def now() -> float:
    return time.perf_counter()


class Clock:
    """Median milliseconds of ``fn``: CUDA events on a GPU, wall time on the CPU."""

    def __init__(self, device: torch.device, reps: int, warmup: int = 3):
        self.device, self.reps, self.warmup = device, reps, warmup

    def __call__(self, fn) -> float:
        for _ in range(self.warmup):
            fn()
        times = []
        for _ in range(self.reps):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = now()
                fn()
                times.append((now() - t0) * 1e3)
        return round(float(np.median(times)), 4)


# The old path, as it was before this change (the reference the new one is timed against).

def dense_coefficients(in_size: int, out_size: int, resample: str) -> torch.Tensor:
    """The old resize's ``[out, in]`` float64 matrix of Pillow's integer weights (the band, spread out)."""
    index, weight = filter_band(in_size, out_size, resample)
    dense = torch.zeros(out_size, in_size, dtype=torch.float64)
    return dense.scatter_add_(1, index, weight.double())


class LegacyResize:
    """The old ``DeviceImageProcessor.resize_many``: ``np.stack``, pageable upload, float64 products over whole rows."""

    def __init__(self, prep: DeviceImageProcessor):
        self.prep, self._plans = prep, {}

    def __call__(self, frames: list[np.ndarray]) -> torch.Tensor:
        rgb = torch.from_numpy(np.stack(frames)).to(self.prep.device)  # [B, H, W, 3]
        in_h, in_w = rgb.shape[-3:-1]
        if (in_h, in_w) not in self._plans:
            out_h, out_w = self.prep.size
            resample = self.prep.processor.resample
            order = ExactResize((out_w, out_h), resample)._plan(in_h, in_w, rgb.device)[2]
            self._plans[in_h, in_w] = (dense_coefficients(in_w, out_w, resample).to(rgb.device),
                                       dense_coefficients(in_h, out_h, resample).to(rgb.device), order)
        horizontal, vertical, order = self._plans[in_h, in_w]
        scale, half = float(1 << 22), float(1 << 21)

        def clip8(acc):
            return torch.floor((acc + half) / scale).clamp_(0.0, 255.0)
        planes = rgb.movedim(-1, -3).to(torch.float64)  # [B, 3, H, W]
        if order == "horizontal":
            out = clip8(vertical @ clip8(planes @ horizontal.T))
        else:
            out = clip8(clip8(vertical @ planes) @ horizontal.T)
        return out.movedim(-3, -1).to(torch.uint8)  # [B, S, S, 3]


def legacy_normalize(prep: DeviceImageProcessor, resized: torch.Tensor) -> torch.Tensor:
    """The old batched body: one normalize per frame, then ``cat``."""
    return torch.cat([prep.normalize(resized[i]) for i in range(resized.shape[0])])


# Graphs (CUDA) or their eager bodies (CPU smoke).

class Replay:
    """``body`` captured as a CUDA graph (``replay`` runs it) on a GPU; on the CPU ``replay`` runs the body."""

    def __init__(self, body, device: torch.device, forward=None):
        self.body, self.graph = body, None
        if device.type == "cuda":
            from lionfs_ros.engine.graphed_frame import capture_tower

            with torch.no_grad():
                self.graph, self.out = capture_tower(forward, body, torch.cuda.Stream(device))

    @torch.no_grad()
    def replay(self) -> torch.Tensor:
        if self.graph is None:
            self.out = self.body()
        else:
            self.graph.replay()
        return self.out


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def build(config: dict, global_token: str, device: torch.device, dtype: torch.dtype) -> VisionEncoder:
    torch.manual_seed(0)
    cfg = VisionConfig(config=config, global_token=global_token)
    with torch.device(device):
        return VisionEncoder(cfg, load_vision_tower(cfg, dtype)).eval()


def single_path(enc: VisionEncoder, device: torch.device, compile: bool):
    """RGB frame -> tokens ``[1, n, C]`` the way the engine's static backend runs it."""
    if device.type == "cuda":
        from lionfs_ros.engine.graphed_frame import GraphedTower

        return GraphedTower(enc, device, compile)
    prep, fused = DeviceImageProcessor(enc.processor, device), FusedTower(enc)
    return lambda rgb: fused(prep.normalize(prep.resize(rgb)))


def batch_path(enc: VisionEncoder, device: torch.device, compile: bool, streams: int = BATCHES[-1]):
    """RGB frames -> tokens ``[B, n, C]`` the way a ``StreamGroup`` of ``streams`` runs them."""
    if device.type == "cuda":
        from lionfs_ros.engine.batched_towers import GraphedTowerBatch

        return GraphedTowerBatch(enc, device, streams, compile)
    prep, fused = DeviceImageProcessor(enc.processor, device), FusedTower(enc)
    return lambda frames: fused(prep.normalize(prep.resize_many(frames)))


@torch.no_grad()
def correctness(enc: VisionEncoder, device: torch.device, frames: list[np.ndarray]) -> dict:
    prep = DeviceImageProcessor(enc.processor, device)
    compiled_prep = DeviceImageProcessor(enc.processor, device, compile=True)  # the resize passes torch.compile'd
    check = frames[:CHECK_FRAMES]
    pillow = torch.from_numpy(enc.processor.resize(np.stack(check))).to(device)  # [B, S, S, 3]: the model's pixels
    out = {"resize": {
        "new_single_equal_pillow": all(torch.equal(prep.resize(f), pillow[i]) for i, f in enumerate(check)),
        "new_many_equal_pillow": bool(torch.equal(prep.resize_many(check), pillow)),
        "old_equal_pillow": bool(torch.equal(LegacyResize(prep)(check), pillow)),
        "compiled_single_equal_pillow": all(torch.equal(compiled_prep.resize(f), pillow[i]) for i, f in enumerate(check)),
        "compiled_many_equal_pillow": bool(torch.equal(compiled_prep.resize_many(check), pillow)),
    }}
    pixels = enc.processor.normalize(pillow)  # [B, 3, S, S] float32, the model's own preprocessing
    reference = copy.deepcopy(enc).float()
    truth = reference.frame_tokens(pixels)  # fp32 copy of the same weights
    hf = enc.frame_tokens(pixels)
    tokens = {"hf_bf16": hf, "fused_eager": FusedTower(enc)(pixels),
              "fused_eager_no_gelu_epilogue": FusedTower(enc, epilogue=False)(pixels)}
    compiled = FusedTower(enc, compile=True)
    try:
        tokens["fused_compiled"] = compiled(pixels)
    except Exception as err:  # what capture_tower would do: record why, run the plain ops
        compiled.use_eager(f"torch.compile failed: {type(err).__name__}: {err}"[:500])
        tokens["fused_compiled"] = compiled(pixels)
    single = single_path(enc, device, compile=True)
    tokens["graphed_single_from_rgb"] = torch.cat([single(f) for f in check])
    if device.type == "cuda":  # the graphed path's resize (compiled passes) left the last frame's pixels in its buffer
        out["resize"]["graphed_single_equal_pillow"] = bool(torch.equal(single.resized[0], pillow[-1]))
        out["resize_compile_fallback"] = {"graphed_single": single.prep.compile_fallback}
    out.setdefault("resize_compile_fallback", {})["compiled_prep"] = compiled_prep.compile_fallback
    tokens["graphed_batch_from_rgb"] = batch_path(enc, device, compile=True, streams=len(check))(check)
    out["tokens"] = {name: {"max_abs_vs_fp32": max_diff(t, truth), "max_abs_vs_hf_bf16": max_diff(t, hf)}
                     for name, t in tokens.items()}
    out["tokens_max_abs"] = float(truth.abs().max())
    out["compiled"] = {"fused": compiled.compiled, "fallback": compiled.compile_fallback,
                       "graphed_single": getattr(getattr(single, "forward", None), "compiled", None)}
    bound = 2 * out["tokens"]["hf_bf16"]["max_abs_vs_fp32"] + 1e-3  # as close to fp32 as HF's own bf16 forward
    out["ok"] = all(out["resize"].values()) and all(v["max_abs_vs_fp32"] <= bound for v in out["tokens"].values())
    del reference
    return out


@torch.no_grad()
def timings(enc: VisionEncoder, device: torch.device, frames: list[np.ndarray], clock: Clock, batches) -> dict:
    prep = DeviceImageProcessor(enc.processor, device)
    legacy = LegacyResize(prep)
    eager, compiled = FusedTower(enc), FusedTower(enc, compile=True)
    plain_gelu = FusedTower(enc, compile=True, epilogue=False)
    out = {"compiled": compiled.compiled, "compile_fallback": compiled.compile_fallback,
           "gelu_epilogue": compiled.gelu_epilogue, "batches": {}}
    single = single_path(enc, device, compile=True)
    group = batch_path(enc, device, compile=True)
    for b in batches:
        resized = torch.zeros(b, *prep.size, 3, dtype=torch.uint8, device=device)
        resized.copy_(prep.resize_many(frames[:b]))
        old = Replay(lambda: enc.frame_tokens(legacy_normalize(prep, resized)), device)
        new = {name: Replay(lambda f=forward: f(prep.normalize(resized)), device, forward)
               for name, forward in (("fused_eager", eager), ("fused_compiled", compiled),
                                     ("fused_compiled_no_gelu_epilogue", plain_gelu))}
        row = {"graph_ms": {"old_hf": clock(old.replay), **{k: clock(g.replay) for k, g in new.items()}},
               "resize_ms": {"old": clock(lambda: legacy(frames[:b])),
                             "new_resize_many": clock(lambda: prep.resize_many(frames[:b]))}}

        def old_call(old=old):
            resized.copy_(legacy(frames[:b]))
            return old.replay().clone()
        row["call_ms"] = {"old": clock(old_call), "new": clock(lambda: group(frames[:b]))}
        if b == 1:
            row["resize_ms"]["new_single"] = clock(lambda: prep.resize(frames[0]))
            row["call_ms"]["new_single_path"] = clock(lambda: single(frames[0]))
        out["batches"][b] = row
        print(json.dumps({b: row}), flush=True)
        del old, new
    out["compile_fallback_at_end"] = compiled.compile_fallback
    out["sdpa_ms"] = sdpa_backends(enc, device, clock)
    return out


@torch.no_grad()
def frame_costs(general: VisionEncoder, ego: VisionEncoder, device: torch.device, frames: list[np.ndarray],
                clock: Clock) -> dict:
    """Where a decided frame's preprocessing goes (one camera frame, both towers): the host copy into the pinned
    buffer alone (CPU wall), the upload (copy + transfer), the resize of each tower with the plain and the compiled
    passes (graph replays on a GPU), and both towers' whole calls one after the other (two uploads) vs ``pair``
    (one upload, the two towers side by side on two streams)."""
    from lionfs_ros.model.image_processing import PinnedUpload

    frame = frames[0]
    host = torch.empty(frame.shape, dtype=torch.uint8, pin_memory=device.type == "cuda").numpy()
    out = {"host_copy_ms": Clock(torch.device("cpu"), clock.reps, clock.warmup)(lambda: np.copyto(host, frame)),
           "upload_ms": clock(lambda: PinnedUpload(device)([frame])) if device.type != "cuda" else None,
           "resize_ms": {}}
    if device.type == "cuda":
        pinned, up = PinnedUpload(device), torch.zeros(1, *frame.shape, dtype=torch.uint8, device=device)
        out["upload_ms"] = clock(lambda: pinned([frame], out=up))
    uploaded = torch.from_numpy(frame)[None].to(device)  # [1, H, W, 3]
    for name, enc in (("general", general), ("ego", ego)):
        row = {}
        for mode in ("plain", "compiled"):
            prep = DeviceImageProcessor(enc.processor, device, compile=mode == "compiled")
            resized = torch.zeros(1, *prep.size, 3, dtype=torch.uint8, device=device)
            graph = Replay(lambda p=prep, r=resized: r.copy_(p.resize_on_device(uploaded)), device)
            row[mode] = clock(graph.replay)
            if mode == "compiled":
                row["compile_fallback"] = prep.compile_fallback
        out["resize_ms"][name] = row
    if device.type == "cuda":
        from lionfs_ros.engine.graphed_frame import FrameUpload, GraphedTower

        upload = FrameUpload(device)
        g, e = GraphedTower(general, device, True, upload), GraphedTower(ego, device, True, upload)
        out["call_ms"] = {"general": clock(lambda: g(frame)), "ego": clock(lambda: e(frame)),
                          "both_two_uploads": clock(lambda: (g(frame), e(frame))),
                          "both_pair_one_upload": clock(lambda: g.pair(e, frame))}
        pair_tokens = g.pair(e, frames[1])
        out["pair_equals_calls"] = bool(torch.equal(pair_tokens[0], g(frames[1])) and torch.equal(pair_tokens[1], e(frames[1])))
    print(json.dumps(out), flush=True)
    return out


def sdpa_backends(enc: VisionEncoder, device: torch.device, clock: Clock) -> dict:
    """One layer's attention at the tower's shape (1 and 16 frames) with each SDPA backend PyTorch has here."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cfg = enc.tower.config
    heads, length = cfg.num_attention_heads, (cfg.image_size // cfg.patch_size) ** 2 + (cfg.model_type == "clip_vision_model")
    dtype = next(enc.tower.parameters()).dtype
    out = {}
    for b in (1, 16):
        q, k, v = (torch.randn(b, heads, length, cfg.hidden_size // heads, dtype=dtype, device=device) for _ in range(3))
        out[b] = {"default": clock(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))}
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
            try:
                with sdpa_kernel(backend):
                    out[b][backend.name.lower()] = clock(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
            except RuntimeError as err:
                out[b][backend.name.lower()] = f"unavailable: {str(err).splitlines()[0][:120]}"
    return out


@torch.no_grad()
def profile(enc: VisionEncoder, device: torch.device) -> dict:
    """Top operators by GPU (CPU here) time of one eager forward at one frame, old HF vs new fused."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as run_profiler

    pixels = torch.randn(1, 3, enc.image_size, enc.image_size, device=device)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    out = {}
    for name, forward in (("old_hf", enc.frame_tokens), ("new_fused", FusedTower(enc))):
        for _ in range(3):
            forward(pixels)
        if cuda:
            torch.cuda.synchronize()
        with run_profiler(activities=activities) as prof:
            forward(pixels)
            if cuda:
                torch.cuda.synchronize()
        rows = []
        for evt in prof.key_averages():
            device_us = getattr(evt, "self_device_time_total", None) if cuda else evt.self_cpu_time_total
            if device_us is None:
                device_us = getattr(evt, "self_cuda_time_total", 0.0)
            rows.append({"op": evt.key, "calls": evt.count, "self_us": round(float(device_us), 1)})
        rows.sort(key=lambda r: -r["self_us"])
        kernels = [e for e in prof.events() if cuda and getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
        out[name] = {"top": rows[:TOP_OPERATORS], "gpu_kernels": len(kernels),
                     "gpu_us_total": round(sum(e.device_time for e in kernels if hasattr(e, "device_time")), 1)}
        print(name, json.dumps(out[name]["top"][:6]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny towers, 2 repetitions (a CPU check of the script)")
    parser.add_argument("--parts", default="correctness,timings,profile")
    parser.add_argument("--towers", default=None, help="comma-separated subset of the towers")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    device = torch.device(args.device)
    towers = SMOKE_TOWERS if args.smoke else TOWERS
    names = args.towers.split(",") if args.towers else list(towers)
    dtype = torch.float32 if args.smoke and device.type == "cpu" else torch.bfloat16
    clock = Clock(device, reps=2 if args.smoke else 20, warmup=1 if args.smoke else 3)
    batches = (1, 2) if args.smoke else BATCHES
    frames = camera_frames(BATCHES[-1], CAMERA)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "dtype": str(dtype), "camera": list(CAMERA), "towers": {}}
    path = args.out / "towers.json"
    args.out.mkdir(parents=True, exist_ok=True)
    for part in args.parts.split(","):
        if part == "frame":  # both towers at once (the first two named)
            started = now()
            general, ego = (build(*towers[name], device, dtype) for name in names[:2])
            result["frame"] = frame_costs(general, ego, device, frames, clock)
            result["frame"]["seconds"] = round(now() - started, 1)
            path.write_text(json.dumps(result, indent=1))
            print(f"== frame: {result['frame']['seconds']} s", flush=True)
            del general, ego
            continue
        for name in names:
            config, global_token = towers[name]
            started = now()
            enc = build(config, global_token, device, dtype)
            if part == "correctness":
                value = correctness(enc, device, frames)
            elif part == "timings":
                value = timings(enc, device, frames, clock, batches)
            elif part == "profile":
                value = profile(enc, device)
            else:
                raise SystemExit(f"unknown part {part!r}")
            value["seconds"] = round(now() - started, 1)
            result["towers"].setdefault(name, {})[part] = value
            path.write_text(json.dumps(result, indent=1))
            print(f"== {part} {name}: {value['seconds']} s", flush=True)
            del enc
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print(json.dumps({n: t.get("correctness", {}).get("ok") for n, t in result["towers"].items()}), flush=True)


if __name__ == "__main__":
    main()
