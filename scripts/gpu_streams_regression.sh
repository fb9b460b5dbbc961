#!/usr/bin/env bash
# Why N=8 streams fell from 379 decided frames/s (main 832d4c3) to 258/s round by round (dc17d66) although each
# decided round got faster (p50 17.4 vs ~20.7 ms): ~50 ms of the N=8 wall sat outside the decided rounds. One call
# on one GPU; every result goes into ONE tarball, $OUT/results.tar.gz, rebuilt after each step, plus
# $OUT/summary.txt:
#   1. lionfs bench --preset llama3-8b --streams 1,8 --stream-rounds 40 with the group's compile on (the default);
#   2. the same with --no-compile (plain elementwise ops in the batched towers' and LLM step's graphs).
# Each JSON's `round_ms` (both throughput modes) splits every round's host wall time by whether the round had a
# decided frame: the summary prints, per N, the wall, the decided and non-decided rounds' totals and p50/max.
# Expected wall time on an H200: ~330 s, at most ~470 s: each step is bounded by `timeout` (cut to what is left
# of 470 s); a bench cut short keeps the N it finished in its JSON. Most of a bench's time is
# building the model and its group (CUDA graphs per bucket and span; with compile on, each bucket's ops compiled).
# Smoke test on a CPU (tiny preset, Triton's interpreter):
#   SMOKE=1 bash scripts/gpu_streams_regression.sh
ROUND=streams_regression
source "$(dirname "$0")/gpu_common.sh"
BUDGET_S=470
if [ "$SMOKE" = 1 ]; then export TRITON_INTERPRET=1; fi

after_step() {  # the summary (what each bench JSON says so far) and the one tarball
  $PY - "$RES" > "$RES/summary.txt" 2>&1 <<'PY'
import glob, json, os, sys

res = sys.argv[1]
for name in ("code.txt", "gpu.txt", "steps.txt"):
    if os.path.exists(os.path.join(res, name)):
        print(open(os.path.join(res, name)).read())


def ms(v):
    return "-" if v is None else f"{v:.1f}"


for path in sorted(glob.glob(os.path.join(res, "streams-*.json"))):
    try:
        data = json.load(open(path))
    except (OSError, ValueError) as err:
        print(os.path.basename(path), "unreadable:", err)
        continue
    print(f"{os.path.basename(path)}: {data.get('device')} compile={data.get('compile')} "
          f"llm_compiled={data.get('llm_compiled')} fallback={data.get('compile_fallback')} "
          f"build={data.get('group_build_s')} s rounds={data.get('rounds')}")
    for run in data.get("runs", []):
        for key in ("throughput_round_by_round", "throughput"):
            t = run.get(key)
            if t is None:
                continue
            split = t.get("round_ms", {})
            d, n = split.get("decided", {}), split.get("not_decided", {})
            print(f"  N={run['streams']:2d} {key:26s} {t['aggregate_decided_fps']:8.2f} decided/s "
                  f"x{t.get('speedup_vs_first', '?')} wall {t['wall_s'] * 1e3:.1f} ms | decided rounds "
                  f"{d.get('rounds')}: total {ms(d.get('total_ms'))} p50 {ms(d.get('p50_ms'))} max "
                  f"{ms(d.get('max_ms'))} ms | other rounds {n.get('rounds')}: total {ms(n.get('total_ms'))} "
                  f"p50 {ms(n.get('p50_ms'))} max {ms(n.get('max_ms'))} ms | stream p50/p99 "
                  f"{ms(t['worst_p50_ms'])}/{ms(t['worst_p99_ms'])} ms")
        rt = run["realtime"]
        print(f"  N={run['streams']:2d} realtime {rt['aggregate_decided_fps']}/{rt['offered_decided_fps']} decided/s "
              f"dropped {rt['dropped_frames']} p99 {ms(rt['worst_p99_ms'])} ms | gpu peak {run.get('gpu_peak_mib')} MiB")
    if "saturation" in data:
        print("  target:", json.dumps(data["saturation"].get("target")))
for path in sorted(glob.glob(os.path.join(res, "trace", "profile-*.json"))):
    data = json.load(open(path))
    print(f"{os.path.basename(path)}: wall {data['wall_ms']} ms, trace {data['trace_window_ms']} ms, gpu busy "
          f"{data['gpu_busy_ms']} ms, {data['kernels']} kernels, gaps {data['largest_gaps_ms'][:8]}")
    print("  rounds", data["rounds_ms"])
    for key in ("top_host_self_ms", "top_device_self_ms"):
        print(f"  {key}:", "; ".join(f"{k[:60]} {ms} ({n})" for k, ms, n in data[key][:12]))
PY
  cp "$RES/summary.txt" "$OUT/summary.txt"
  pack
}

if [ "$SMOKE" = 1 ]; then
  PRESET="tiny --device cpu"; ROUNDS="--stream-rounds 8 --prefill-rounds 2 --realtime-seconds 0.6"
else
  PRESET=llama3-8b; ROUNDS="--stream-rounds 40 --prefill-rounds 8 --realtime-seconds 2"
fi
# 1 + 2: the same bench with the group's compile on, then off.
step streams-compile 140 $PY -m lionfs_ros.commands.bench --preset $PRESET --streams 1,8 $ROUNDS \
  --out "$RES/streams-compile.json"
step streams-nocompile 140 $PY -m lionfs_ros.commands.bench --preset $PRESET --streams 1,8 $ROUNDS --no-compile \
  --out "$RES/streams-nocompile.json"
# 3. torch.profiler over 8 rounds at N=1 and 8 (round by round, pipelined): GPU busy time against the wall.
step profile 150 $PY scripts/trace_streams.py --preset $PRESET --streams 1,8 --rounds 8 --prefill-rounds 16 \
  --out "$RES/trace"
# 4. the CUDA tests of the batched step and the kernel (skipped on a CPU).
test_step 100 -x -q test/engine/test_batched_step.py test/engine/test_decode_attention.py \
  test/engine/test_static_backend.py
finish
