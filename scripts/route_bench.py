"""One token-dropping layer's routing, old (torch) vs new (``engine/kernels/token_routing.py``), in one run (issue 14).

Synthetic tensors at the ``lionfs-8b`` preset's sizes (d 4096, RoPE dim 128, a decided frame: interval + 10 visual
tokens, keep 5; 17 tracks), bf16 on a GPU. The layer itself is left out (its outputs are fixed tensors): what is
timed is what a routed layer runs around it. Parts, in this order (``route.json`` is written after each):
- ``agreement``: over many random feeds (one frame, and 4 frames with text between), the kernel's kept tokens
  against the torch routing's (``routing.kept_indices``), in the model dtype: feeds whose kept set is equal, and
  of the others how far apart the boundary logits were; gathered rows and slot writes equal; the stream after
  the layer equal and its next norm's max abs difference;
- ``timing``: old = router, top-k and the kept order (``kept_indices``), the gathers of h, residual, pos, cos, sin,
  the slot writes, ``residual_k + mlp``, the scatter back and the next norm (``torch.compile``d where it can, as on
  the graph path); new = ``route`` + ``merge``. Each captured as a CUDA graph of ``LAYERS`` routed layers (a
  decided frame's); replays timed with CUDA events: microseconds per routed layer (p50 over replays).

    PYTHONPATH=. python3 scripts/route_bench.py --out $OUT             # CUDA, about 20-40 s
    PYTHONPATH=. python3 scripts/route_bench.py --smoke --device cpu   # tiny sizes, Triton's interpreter, no graphs
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if "--smoke" in sys.argv:  # the interpreter must be chosen before Triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from lionfs_ros.engine.bench.graph_timing import graph_ms  # noqa: E402
from lionfs_ros.engine.routing import drop_plan, kept_indices  # noqa: E402
from lionfs_ros.engine.decoder_ops import compile_problem, rms_norm  # noqa: E402
from lionfs_ros.engine.static_decoder import POSITION_SENTINEL  # noqa: E402
from lionfs_ros.engine.kernels import token_routing  # noqa: E402
from lionfs_ros.engine.kernels.token_routing import merge, route  # noqa: E402
from lionfs_ros.model.token_dropping import TokenDroppingRouter  # noqa: E402

SIZES = dict(hidden=4096, rot=128, tokens=10, keep=5, tracks=17, capacity=4096)  # lionfs-8b
SMOKE_SIZES = dict(hidden=64, rot=16, tokens=10, keep=5, tracks=3, capacity=256)
LAYERS = 16  # routed layers of lionfs-8b: one graph holds a decided frame's worth
FEEDS = 300  # random feeds per layout of the agreement part (smoke: 6)
REPLAYS = 200  # timed replays per graph (smoke: 2 eager calls)
WARMUP = 20
ROUTE_CONFIGS = ((2048, 4), (4096, 4), (16384, 8))  # (TILE, ROUTE_WARPS) tried besides the default, decided frame only
INIT_STD = 0.02  # router projection init
NORM_EPS = 1e-5


def feed(visual: list[bool], sizes: dict, dtype, device, gen: torch.Generator):
    """Random residual/h rows (a residual stream's scale), positions, cos/sin, for a feed with this visual mask."""
    m, d, r = len(visual), sizes["hidden"], sizes["rot"]
    residual = (torch.randn(m, d, generator=gen) * torch.rand(m, 1, generator=gen) * 4).to(device, dtype)
    h = torch.randn(m, d, generator=gen).to(device, dtype)
    angles = torch.rand(1, m, r, generator=gen) * 6.28
    return residual, h, torch.arange(m, device=device) + 500, angles.cos().to(device, dtype), angles.sin().to(device, dtype)


def layouts(sizes: dict) -> dict[str, list[bool]]:
    n = sizes["tokens"]
    one = [False] + [True] * n  # a decided frame: the interval token, then the frame
    four = [False] * 2 + ([True] * n + [False]) * 4  # four frames with text between (a prefill piece)
    return {"frame": one, "four_frames": four}


def agreement(sizes: dict, dtype, device, feeds: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    tracks = [False] + [True] * (sizes["tracks"] - 1)
    out = {}
    for name, visual in layouts(sizes).items():
        plan = drop_plan(visual, sizes["tokens"], sizes["keep"], tracks, device)
        equal, gathers_equal, stream_equal, norm_diff, boundary_gaps = 0, True, True, 0.0, []
        for k in range(feeds):
            router = TokenDroppingRouter(sizes["hidden"], INIT_STD)
            with torch.no_grad():
                router.norm.weight.copy_(1 + 0.1 * torch.randn(sizes["hidden"], generator=gen))
                router.proj.weight.copy_(torch.randn(1, sizes["hidden"], generator=gen) * INIT_STD)
                router.proj.bias.fill_(0.1)
            router = router.to(device, dtype)
            residual, h, pos, cos, sin = feed(visual, sizes, dtype, device, gen)
            slot_pos = torch.full((sizes["tracks"], sizes["capacity"]), POSITION_SENTINEL, dtype=torch.long,
                                  device=device)
            fill = torch.randint(0, sizes["capacity"] // 2, (sizes["tracks"],), generator=gen).to(device)
            with torch.no_grad():
                want = kept_indices(router, residual[None], plan, sizes["keep"])[0]
                sel, dest_of, h_k, res_k, pos_k, cos_k, sin_k, slots = route(
                    residual, h, pos, cos, sin, plan.frame_of, sizes["keep"], plan.kept, router, slot_pos, fill, 1)
                logits = router(residual[None])[0].float()
            if torch.equal(sel, want):
                equal += 1
            else:  # how close the two choices' logits were (a near-tie at the boundary)
                a, b = set(sel.tolist()) - set(want.tolist()), set(want.tolist()) - set(sel.tolist())
                boundary_gaps.append(max((abs(logits[i] - logits[j]).item() for i in a for j in b), default=0.0))
            gathers_equal &= all(torch.equal(x, y) for x, y in (
                (h_k, h[sel]), (res_k, residual[sel]), (pos_k, pos[sel]), (cos_k, cos[:, sel]), (sin_k, sin[:, sel]),
                (slot_pos[1, slots], pos[sel])))
            mlp = torch.randn(res_k.shape, generator=gen).to(device, dtype)
            weight = (1 + 0.1 * torch.randn(sizes["hidden"], generator=gen)).to(device, dtype)
            stream, normed = merge(residual, res_k, mlp, dest_of, weight, NORM_EPS, len(visual))
            want_stream = residual.index_copy(0, sel, res_k + mlp)
            stream_equal &= torch.equal(stream, want_stream)
            norm_diff = max(norm_diff, (normed.float() - rms_norm(want_stream, weight, NORM_EPS).float()).abs().max().item())
        out[name] = {"feeds": feeds, "rows": len(visual), "kept_equal": equal, "boundary_logit_gaps": boundary_gaps,
                     "gathers_and_slots_equal": gathers_equal, "stream_equal": stream_equal,
                     "next_norm_max_abs_diff": norm_diff}
    out["ok"] = all(v["kept_equal"] == v["feeds"] and v["gathers_and_slots_equal"] and v["stream_equal"]
                    for v in out.values())
    return out


def timing(sizes: dict, dtype, device, replays: int, out: dict, save) -> dict:
    """Fills ``out`` layout by layout, calling ``save()`` after each."""
    gen = torch.Generator().manual_seed(1)
    tracks = [False] + [True] * (sizes["tracks"] - 1)
    norm = rms_norm if compile_problem() is not None else torch.compile(rms_norm, dynamic=False, fullgraph=True)
    out["old_norm_compiled"] = norm is not rms_norm
    for name, visual in layouts(sizes).items():
        plan = drop_plan(visual, sizes["tokens"], sizes["keep"], tracks, device)
        router = TokenDroppingRouter(sizes["hidden"], INIT_STD).to(device, dtype)
        residual, h, pos, cos, sin = feed(visual, sizes, dtype, device, gen)
        res_k, mlp = (torch.randn(2, plan.kept, sizes["hidden"], generator=gen)).to(device, dtype)
        weight = torch.ones(sizes["hidden"], dtype=dtype, device=device)
        slot_pos = torch.full((sizes["tracks"], sizes["capacity"]), POSITION_SENTINEL, dtype=torch.long, device=device)
        fill = torch.zeros(sizes["tracks"], dtype=torch.long, device=device)
        track = 1

        def old():
            sel = kept_indices(router, residual[None], plan, sizes["keep"])[0]
            pos_k, cos_k, sin_k, h_k, r_k = pos[sel], cos[:, sel], sin[:, sel], h[sel], residual[sel]
            slots = fill[track] + torch.arange(pos_k.shape[0], device=device)
            slot_pos[track].index_copy_(0, slots, pos_k)
            stream = residual.index_copy(0, sel, res_k + mlp)
            return norm(stream, weight, NORM_EPS), cos_k, sin_k, h_k, r_k

        def new():
            _, dest_of, h_k, r_k, pos_k, cos_k, sin_k, slots = route(
                residual, h, pos, cos, sin, plan.frame_of, sizes["keep"], plan.kept, router, slot_pos, fill, track)
            return merge(residual, res_k, mlp, dest_of, weight, NORM_EPS, len(visual))

        def route_only():
            return route(residual, h, pos, cos, sin, plan.frame_of, sizes["keep"], plan.kept, router, slot_pos, fill,
                         track)

        row = {"rows": len(visual), "kept": plan.kept, "old_us_per_layer": clock(old, device, replays),
               "new_route_only_us_per_layer": clock(route_only, device, replays),
               "new_us_per_layer": clock(new, device, replays), "default_route_config": [token_routing.TILE,
                                                                                         token_routing.ROUTE_WARPS]}
        default = token_routing.TILE, token_routing.ROUTE_WARPS
        row["new_us_per_layer_by_route_config"] = {}
        for tile, warps in ROUTE_CONFIGS[:1 if device.type != "cuda" or name != "frame" else None]:
            token_routing.TILE, token_routing.ROUTE_WARPS = tile, warps
            row["new_us_per_layer_by_route_config"][f"{tile}x{warps}"] = clock(new, device, replays)
        token_routing.TILE, token_routing.ROUTE_WARPS = default
        row["saved_us_per_layer"] = row["old_us_per_layer"] - row["new_us_per_layer"]
        row["saved_ms_per_frame"] = row["saved_us_per_layer"] * LAYERS / 1e3
        out[name] = row
        save()
    return out


@torch.no_grad()
def clock(body, device, replays: int) -> float:
    """Microseconds per call: ``LAYERS`` calls in one CUDA graph, p50 over replays (on the CPU: eager calls)."""
    def frame():
        for _ in range(LAYERS):
            body()

    if device.type != "cuda":
        t0 = time.perf_counter()
        for _ in range(replays):
            frame()
        return (time.perf_counter() - t0) / replays / LAYERS * 1e6
    # 3 eager runs first: compile, autotune, cuBLAS handles before the capture
    return graph_ms(frame, device, replays, warmup_runs=3, warmup_replays=WARMUP) * 1e3 / LAYERS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few feeds (a CPU check of this script)")
    ap.add_argument("--parts", default="agreement,timing")
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sizes = SMOKE_SIZES if args.smoke else SIZES
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "dtype": str(dtype), "torch": torch.__version__, "sizes": sizes, "routed_layers": LAYERS}
    def save():
        (out_dir / "route.json").write_text(json.dumps(result, indent=1))

    for part in args.parts.split(","):
        t0 = time.time()
        if part == "agreement":
            result[part] = agreement(sizes, dtype, device, 6 if args.smoke else FEEDS)
        elif part == "timing":
            result[part] = {}
            timing(sizes, dtype, device, 2 if args.smoke else REPLAYS, result[part], save)
        else:
            raise SystemExit(f"unknown part {part!r}")
        result[part]["seconds"] = round(time.time() - t0, 1)
        save()
        print(part, json.dumps(result[part])[:600], flush=True)


if __name__ == "__main__":
    main()
