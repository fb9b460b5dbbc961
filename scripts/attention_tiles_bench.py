"""How to cut the decode-attention kernel on this GPU (issue 14): every candidate ``Tiles`` at Llama-3-8B's attention
(32 query / 8 K/V heads of 128, the llama3-8b preset's buffer capacity 4,608) for a decided frame (11 positions:
44 stacked query rows) and a generated token (1 position: 4 rows), at several fills; and the rotary + KV-write
kernel against the compiled torch op it replaces.

    python scripts/attention_tiles_bench.py --out DIR            # on the GPU; ~60 s on an H200
    python scripts/attention_tiles_bench.py --smoke --out DIR    # CPU, Triton's interpreter, tiny sizes

Writes ``DIR/attention_tiles.json`` as it goes: per candidate its correctness (bf16 kernel against a float64
reference, next to the split arithmetic's own error) and, per fill, microseconds per layer (32 layers, each its own
K/V buffers, replayed in one CUDA graph), the fastest candidate per (case, fill) and the default's time.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.getcwd())
from lionfs_ros.engine.bench.graph_timing import graph_ms  # noqa: E402
from lionfs_ros.engine.kernels.decode_attention import Tiles, decode_attention, default_tiles  # noqa: E402
from lionfs_ros.engine.kernels.rope_store import rope_and_store as rope_kernel  # noqa: E402
from lionfs_ros.engine.decoder_ops import rope_and_store  # noqa: E402
from lionfs_ros.engine.static_decoder import POSITION_SENTINEL  # noqa: E402

CASES = {"frame": 11, "token": 1}  # positions per feed: a decided frame (interval + 10 tokens), a generated token


def candidates(rows_q: int, smoke: bool) -> list[Tiles]:
    """The tiles tried for ``rows_q`` stacked query rows."""
    block_qs = sorted({16, min(64, max(16, 1 << (rows_q - 1).bit_length()))})
    pers = (32, 64) if smoke else (64, 128, 256, 512)
    out = []
    for block_q, per, stages in itertools.product(block_qs, pers, (2, 3)):
        warps = (2, 4) if block_q == 16 else (4,)
        for w in warps:
            out.append(Tiles(block_q, per, 64 if per >= 64 else 32, w, stages))
        if per == pers[0] and not smoke:
            out.append(Tiles(block_q, per, 32, 4, stages))
    return out


def pool(layers, hkv, cap, d, fill, m, dev, dtype, gen):
    """``layers`` K/V buffers ``[1, H_kv, cap, D]``, slots 0..fill+m held (positions with a gap: evicted tokens)."""
    keys = [torch.randn(1, hkv, cap, d, generator=gen).to(dev, dtype) for _ in range(layers)]
    values = [torch.randn(1, hkv, cap, d, generator=gen).to(dev, dtype) for _ in range(layers)]
    slot_pos = torch.full((1, 1, cap), POSITION_SENTINEL, dtype=torch.long)
    slot_pos[0, 0, :fill + m] = torch.cat([torch.arange(fill), fill + 7 + torch.arange(m)])
    pos = (fill + 7 + torch.arange(m))[None]
    return keys, values, slot_pos.to(dev), torch.tensor([[fill]], device=dev), pos.to(dev)


def reference(q, k, v, slot_pos, pos, scale):
    """float64 attention of ``q [1, M, Hq, D]`` over ``k``/``v`` ``[1, Hkv, cap, D]`` -> ``[1, M, Hq, D]``."""
    g = q.shape[2] // k.shape[1]
    kk = k[0].double().repeat_interleave(g, 0)  # [Hq, cap, D]
    vv = v[0].double().repeat_interleave(g, 0)
    s = torch.einsum("mhd,hcd->hmc", q[0].double(), kk) * scale
    s = s.masked_fill(~(slot_pos[0, 0][None, None, :] <= pos[0][None, :, None]), float("-inf"))
    return torch.einsum("hmc,hcd->mhd", torch.softmax(s, -1), vv)[None]


def timed(fn, reps, smoke, device):
    """ms per call of ``fn``: the median replay of it as one CUDA graph on the GPU, one run on the CPU."""
    if smoke:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    return graph_ms(fn, device, reps, warmup_runs=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true", help="CPU, Triton's interpreter, tiny sizes")
    args = ap.parse_args()
    smoke = args.smoke
    dev = torch.device("cpu" if smoke else "cuda")
    dtype = torch.float32 if smoke else torch.bfloat16
    hkv, g, d = (2, 2, 16) if smoke else (8, 4, 128)
    cap = 256 if smoke else 4608
    fills = (60, 180) if smoke else (700, 1500, 3000)
    layers, reps = (2, 1) if smoke else (32, 30)
    scale = d ** -0.5
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "attention_tiles.json")
    res = {"device": "cpu" if smoke else torch.cuda.get_device_name(dev), "torch": torch.__version__,
           "heads": {"q": hkv * g, "kv": hkv, "dim": d}, "capacity": cap, "layers": layers, "cases": {}, "rope": []}

    def save():
        with open(path, "w") as f:
            json.dump(res, f, indent=1)

    gen = torch.Generator().manual_seed(0)
    for case, m in CASES.items():
        rows_q = g * m
        tried = candidates(rows_q, smoke)
        entry = res["cases"][case] = {"positions": m, "rows_q": rows_q, "candidates": [], "best": {}}
        # correctness first, at the middle fill: every candidate against float64
        keys, values, slot_pos, fill, pos = pool(1, hkv, cap, d, fills[-1] // 2, m, dev, dtype, gen)
        q = torch.randn(1, m, hkv * g, d, generator=gen).to(dev, dtype)
        exact = reference(q, keys[0], values[0], slot_pos, pos, scale)
        rows = torch.zeros(1, dtype=torch.long, device=dev)
        for tiles in tried + [None]:
            out = decode_attention(q, keys[0], values[0], slot_pos, fill, pos, rows, 0, scale, tiles=tiles)
            err = (out.double() - exact).abs().max().item()
            entry["candidates"].append({"tiles": None if tiles is None else tiles.__dict__, "max_abs_vs_float64": err,
                                        "ok": err <= (1e-5 if smoke else 2e-2), "us_per_layer": {}})
        save()
        for f in fills:
            keys, values, slot_pos, fill, pos = pool(layers, hkv, cap, d, f, m, dev, dtype, gen)
            for cand, tiles in zip(entry["candidates"], tried + [None]):
                def run(tiles=tiles):
                    for k, v in zip(keys, values):
                        decode_attention(q, k, v, slot_pos, fill, pos, rows, 0, scale, tiles=tiles)
                cand["us_per_layer"][str(f)] = 1e3 * timed(run, reps, smoke, dev) / layers
            default = entry["candidates"][-1]
            ok = [c for c in entry["candidates"][:-1] if c["ok"]]
            best = min(ok, key=lambda c: c["us_per_layer"][str(f)]) if ok else None
            entry["best"][str(f)] = {
                "default_tiles": default_tiles(rows_q, cap, hkv, dev).__dict__,
                "default_us": default["us_per_layer"][str(f)],
                "best_tiles": best and best["tiles"], "best_us": best and best["us_per_layer"][str(f)]}
            print(case, f, json.dumps(entry["best"][str(f)]), flush=True)
            save()
    # rotary + KV writes: the kernel against the torch op (compiled on the GPU, as the engine ran it)
    op = rope_and_store if smoke else torch.compile(rope_and_store, dynamic=False, fullgraph=True)
    for m in CASES.values():
        qkv = torch.randn(m, (hkv * g + 2 * hkv) * d, generator=gen).to(dev, dtype)
        angles = torch.rand(1, m, d // 2, generator=gen).to(dev)
        cos, sin = angles.cos().repeat(1, 1, 2).to(dtype), angles.sin().repeat(1, 1, 2).to(dtype)
        bufs = [torch.zeros(2, hkv, cap, d, device=dev, dtype=dtype) for _ in range(layers)]
        slots = torch.arange(m, device=dev) + 100
        want = op(qkv, cos, sin, bufs[0][0], bufs[0][1], slots, (hkv * g, hkv, d))
        got = rope_kernel(qkv, cos, sin, bufs[1 % layers][0], bufs[1 % layers][1], slots, (hkv * g, hkv, d))
        row = {"positions": m, "q_max_abs_vs_torch": (got.float() - want.transpose(0, 1).float()).abs().max().item()}
        for name, fn in (("torch_us_per_layer", op), ("kernel_us_per_layer", rope_kernel)):
            def run(fn=fn):
                for b in bufs:
                    fn(qkv, cos, sin, b[0], b[1], slots, (hkv * g, hkv, d))
            row[name] = 1e3 * timed(run, reps, smoke, dev) / layers
        res["rope"].append(row)
        print("rope", json.dumps(row), flush=True)
        save()
    res["all_ok"] = all(c["ok"] for e in res["cases"].values() for c in e["candidates"])
    save()
    print("all candidates correct:", res["all_ok"])


if __name__ == "__main__":
    main()
