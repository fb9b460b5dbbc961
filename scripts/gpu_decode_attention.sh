#!/usr/bin/env bash
# The Triton decode-attention kernel on one GPU (issues 14 and 19), in one call, results under $OUT as they come:
#   1. correctness (bf16, Llama-3-8B attention: 32 q / 8 kv heads, D=128): kernel vs the split arithmetic vs a
#      float64 reference, fills 500..4000, B=1 (a lone state) and B=8 pool rows, M=1 and M=11, a second track;
#   2. attention alone (32 layers in one CUDA graph): today's split path (B=1: whole capacity + mask; B=8: gather
#      copy + mask) vs the kernel, spans 512 and 4096;
#   3. lionfs bench --preset llama3-8b and lionfs-8b: graphs+compile+triton (the default config) vs graphs+compile+split;
#   4. lionfs bench --preset llama3-8b --streams 1,8 (default config: the kernel in the batched step).
# (1b: where pytest is installed, the engine's kernel and CUDA-graph tests, float32 tiny models.)
# Expected wall time on an H200: ~250 s; each step is bounded by `timeout` (30 + 35 + 90 + 100 + 45 s: the whole at
# most ~300 s); a bench cut short keeps the phases it finished in its JSON.
# Smoke test on a CPU (tiny sizes, Triton's interpreter, the tiny preset): SMOKE=1 bash scripts/gpu_decode_attention.sh
OUT=${OUT:-$(mktemp -d)}
RES=$OUT  # few results: they come back as files, no tarball
ROUND=decode_attention
source "$(dirname "$0")/gpu_common.sh"
after_step() { :; }
if [ "$SMOKE" = 1 ]; then export TRITON_INTERPRET=1; fi

# 1 + 2: correctness first, then attention alone.
step kernel 30 $PY - "$OUT" "$SMOKE" <<'PY'
import json, sys, time
import torch
from lionfs_ros.engine.bench.graph_timing import graph_ms
from lionfs_ros.engine.kernels.decode_attention import decode_attention
from lionfs_ros.engine.static_decoder import POSITION_SENTINEL, SPLIT_CHUNK, masked_softmax

out_dir, smoke = sys.argv[1], sys.argv[2] == "1"
dev = torch.device("cpu" if smoke else "cuda")
dtype = torch.float32 if smoke else torch.bfloat16
HKV, G, D = (2, 2, 16) if smoke else (8, 4, 128)
CAP = 512 if smoke else 4608  # the llama3-8b preset's capacity (budget 4096 + a feed, whole chunks)
FILLS = [40, 100, 150, 200, 250, 300, 400, 450] if smoke else [500, 1000, 1500, 2000, 2500, 3000, 3500, 4000]
SCALE = D ** -0.5
results = {"device": str(dev) if smoke else torch.cuda.get_device_name(dev), "dtype": str(dtype), "torch": torch.__version__,
           "heads": {"kv": HKV, "groups": G, "dim": D}, "capacity": CAP, "correctness": [], "speed": []}


def save():
    with open(f"{out_dir}/kernel.json", "w") as f:
        json.dump(results, f, indent=1)


def pool(fills, m, tracks=2, seed=0):
    """Rows ``fills`` long plus ``m`` new tokens; track 1 keeps a random half (a dropping layer's subset)."""
    gen = torch.Generator().manual_seed(seed)
    n = len(fills)
    keys = torch.randn(n, HKV, CAP, D, generator=gen).to(dev, dtype)
    values = torch.randn(n, HKV, CAP, D, generator=gen).to(dev, dtype)
    slot_pos = torch.full((n, tracks, CAP), POSITION_SENTINEL, dtype=torch.long)
    fill = torch.zeros(n, tracks, dtype=torch.long)
    pos = torch.empty(n, tracks, m, dtype=torch.long)
    for r, f in enumerate(fills):
        for t in range(tracks):
            held = torch.arange(f) if t == 0 else torch.randperm(f, generator=gen)[:f // 2].sort().values
            pos[r, t] = f + 7 + torch.arange(m)  # after a gap (evicted tokens)
            slot_pos[r, t, :len(held) + m] = torch.cat([held, pos[r, t]])
            fill[r, t] = len(held)
    return keys, values, slot_pos.to(dev), fill.to(dev), pos.to(dev)


def stacked(q):
    """``[B, M, H_q, D]`` -> ``[B, H_kv, G * M, D]`` (row ``j * M + i`` is head ``h * G + j``): the split layout."""
    b, m = q.shape[:2]
    return q.view(b, m, HKV, G, D).permute(0, 2, 3, 1, 4).reshape(b, HKV, G * m, D)


def split_rows(q, keys, values, slot_pos, pos, rows, track, span, exact=False):
    """The split path per row: bf16 scores, float32 masked softmax, value product in SPLIT_CHUNK chunks summed in
    float32 (``exact``: everything in float64)."""
    out = []
    for b, r in enumerate(rows.tolist()):
        allowed = (slot_pos[r, track, None, :span] <= pos[b, :, None]).repeat(G, 1)
        k, v, qq = keys[r, :, :span], values[r, :, :span], q[b]
        if exact:
            s = (qq.double() @ k.double().transpose(1, 2)) * SCALE
            out.append(torch.softmax(s.masked_fill(~allowed, float("-inf")), -1) @ v.double())
            continue
        mask = torch.zeros(allowed.shape, device=dev).masked_fill(~allowed, float("-inf"))
        probs = masked_softmax(qq @ k.transpose(1, 2), mask, SCALE)  # [Hkv, gM, span]
        chunks = span // SPLIT_CHUNK
        part = probs.view(HKV, -1, chunks, SPLIT_CHUNK).transpose(1, 2) @ v.view(HKV, chunks, SPLIT_CHUNK, D)
        out.append(part.sum(1, dtype=torch.float32).to(dtype))
    return torch.stack(out)


torch.manual_seed(0)
for b_rows, m, track in [(1, 11, 0), (1, 1, 0), (8, 11, 0), (8, 11, 1), (8, 1, 1)]:
    fills = FILLS[-b_rows:] if b_rows == 1 else FILLS
    keys, values, slot_pos, fill, pos_all = pool(fills, m)
    rows = torch.arange(len(fills), device=dev)[:b_rows]
    pos = pos_all[rows, track]
    span = CAP
    q = torch.randn(b_rows, m, HKV * G, D, device=dev).to(dtype)  # the kernel's layout: [B, M, H_q, D]
    got = stacked(decode_attention(q, keys, values, slot_pos, fill, pos, rows, track, SCALE, span))
    split = split_rows(stacked(q), keys, values, slot_pos, pos, rows, track, span)
    exact = split_rows(stacked(q), keys, values, slot_pos, pos, rows, track, span, exact=True)
    row = {"rows": b_rows, "m": m, "track": track, "fills": fill[rows, track].tolist(),
           "kernel_vs_split_max_abs": (got.float() - split.float()).abs().max().item(),
           "kernel_vs_float64_max_abs": (got.double() - exact).abs().max().item(),
           "split_vs_float64_max_abs": (split.double() - exact).abs().max().item()}
    row["ok"] = row["kernel_vs_float64_max_abs"] <= 2 * row["split_vs_float64_max_abs"] + 1e-3
    results["correctness"].append(row)
    print(json.dumps(row))
    save()


def timed(fn, reps):
    """ms per call of ``fn`` (which runs 32 layers' attention): its median replay as a CUDA graph on the GPU."""
    if smoke:
        fn()
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    return graph_ms(fn, dev, reps, warmup_runs=2)


LAYERS = 2 if smoke else 32
M = 11  # a decided frame: interval + 10 tokens
for b_rows in (1, 8):
    for span in ((256, 512) if smoke else (512, 4096)):
        fill_len = span - 2 * M  # the context the step attends to; the graph is captured at this span
        keys, values, slot_pos, fill, pos_all = pool([fill_len] * (b_rows + 1), M, tracks=1)
        rows = torch.arange(b_rows, device=dev)
        pos = pos_all[rows, 0]
        q = torch.randn(b_rows, M, HKV * G, D, device=dev).to(dtype)  # the kernel's layout
        q_split = stacked(q)
        read = CAP if b_rows == 1 else span  # one stream: split reads the whole buffer; the pool step: its span

        def old():
            allowed = (slot_pos[rows, 0, :read][:, None, :] <= pos[:, :, None]).repeat(1, G, 1)
            mask = torch.zeros(allowed.shape, device=dev).masked_fill(~allowed, float("-inf"))  # once per step
            for _ in range(LAYERS):
                if b_rows == 1:
                    k, v = keys[0, :, :read], values[0, :, :read]
                    probs = masked_softmax(q_split[0] @ k.transpose(1, 2), mask[0], SCALE)
                    chunks = read // SPLIT_CHUNK
                    part = probs.view(HKV, -1, chunks, SPLIT_CHUNK).transpose(1, 2) @ v.view(HKV, chunks, SPLIT_CHUNK, D)
                    part.sum(1, dtype=torch.float32).to(dtype)
                else:
                    k, v = keys[rows, :, :read], values[rows, :, :read]  # the gather copy
                    probs = masked_softmax(q_split @ k.transpose(-1, -2), mask[:, None], SCALE)
                    probs @ v

        def new():
            for _ in range(LAYERS):
                decode_attention(q, keys, values, slot_pos, fill, pos, rows, 0, SCALE, read)

        row = {"rows": b_rows, "span": span, "fill": fill_len, "layers": LAYERS, "split_slots_read": read,
               "split_ms": timed(old, 50), "kernel_ms": timed(new, 50)}
        row["speedup"] = row["split_ms"] / row["kernel_ms"]
        results["speed"].append(row)
        print(json.dumps(row))
        save()
results["all_ok"] = all(r["ok"] for r in results["correctness"])
save()
print("correctness ok:", results["all_ok"])
PY

# 1b: the kernel's tests on the GPU (float32 tiny models with CUDA graphs: the kernel in the graphed single-stream step
# with token dropping and in the graphed batched step, against split / each stream alone) where pytest is installed.
test_step $([ "$SMOKE" = 1 ] && echo 90 || echo 35) -x -q test/engine/test_decode_attention.py

if [ "$SMOKE" = 1 ]; then
  BENCH="--device cpu"; P8=tiny; PL=tiny-lionfs; SIZES="--prefill-frames 4 --frames 4 --new-tokens 4"; SIZES_L=$SIZES
  STREAMS="--stream-rounds 4 --prefill-rounds 2 --realtime-seconds 1"
else
  BENCH=""; P8=llama3-8b; PL=lionfs-8b; SIZES="--prefill-frames 120 --frames 30 --new-tokens 32"
  SIZES_L="--prefill-frames 100 --frames 30 --new-tokens 32"  # 4 camera frames per decided one (ego at 8 fps)
  STREAMS="--stream-rounds 16 --prefill-rounds 8 --realtime-seconds 2"
fi
# 3: the engine, default (kernel; first, so a timeout cuts the baseline, not it) vs split, both against the naive loop.
step bench-$P8 90 $PY -m lionfs_ros.commands.bench --preset $P8 $BENCH $SIZES \
  --variants graphs+compile+triton,graphs+compile+split --concurrent-variant graphs+compile+triton \
  --out "$OUT/bench-$P8.json"
step bench-$PL 100 $PY -m lionfs_ros.commands.bench --preset $PL $BENCH $SIZES_L \
  --variants graphs+compile+triton,graphs+compile+split --concurrent-variant graphs+compile+triton \
  --out "$OUT/bench-$PL.json"
# 4: several streams, the kernel in the batched step.
step streams-$P8 45 $PY -m lionfs_ros.commands.bench --preset $P8 $BENCH --streams 1,8 $STREAMS \
  --out "$OUT/streams-$P8.json"
# One summary of the above (what each JSON says, where it exists).
$PY - "$OUT" <<'PY' > "$OUT/summary.json" 2> "$OUT/summary.log"
import glob, json, os, sys

out, summary = sys.argv[1], {}
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(path)[:-5]
    if name == "summary":
        continue
    try:
        data = json.load(open(path))
    except (OSError, ValueError) as err:
        summary[name] = f"unreadable: {err}"
        continue
    if name == "kernel":
        summary[name] = {"all_ok": data.get("all_ok"), "max_kernel_vs_split": max(
            (r["kernel_vs_split_max_abs"] for r in data["correctness"]), default=None),
            "speedups": {f"B={r['rows']} span={r['span']}": round(r["speedup"], 2) for r in data["speed"]}}
    elif "variants" in data:
        summary[name] = {v: {"attention_run": x.get("attention_run"), "fast_p50_ms": x.get("fast", {}).get("p50_ms"),
                             "fast_p99_ms": x.get("fast", {}).get("p99_ms"),
                             "slow_tokens_per_s": x.get("slow", {}).get("tokens_per_second"),
                             "decisions_equal": [x.get("equality", {}).get(k) for k in ("decisions_equal", "frames_compared")]}
                         for v, x in data["variants"].items()}
    elif "runs" in data:
        summary[name] = {"attention": data.get("attention"), "saturation": data.get("saturation"),
                         "throughput": [{"streams": r["streams"], **{k: r["throughput"].get(k) for k in
                                         ("aggregate_decided_fps", "speedup_vs_first", "worst_p50_ms", "worst_p99_ms")}}
                                        for r in data["runs"] if isinstance(r.get("throughput"), dict)]}
print(json.dumps(summary, indent=1))
PY
cat "$OUT/steps.txt"
cat "$OUT/summary.json"
