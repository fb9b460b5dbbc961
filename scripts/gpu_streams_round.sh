#!/usr/bin/env bash
# Streams round 2 on one GPU (issue 19, and 14's LLM step), in one call. Every result goes into ONE tarball,
# $OUT/results.tar.gz, rebuilt after each step, plus $OUT/summary.txt (the device returns few files):
#   1. correctness: the engine's batched-step and kernel tests on the GPU (float32 tiny models in CUDA graphs: the
#      graphed batched step with plain and with compiled elementwise ops and pipelined rounds against each stream
#      alone; the decode-attention kernel);
#   2. lionfs bench --preset llama3-8b --streams 1,2,4,8,16 (default config: compile, triton attention);
#   3. lionfs bench --preset lionfs-8b --streams 1,8;
#   4. docs/benchmarks/profile_streams.py llama3-8b with a group of 8 streams (towers and batched LLM graphs per
#      bucket and span), only with the time that is left.
# Expected wall time on an H200: ~270 s, at most ~300 s: each step is bounded by `timeout` (90 + 125 + 80 s, each cut
# to what is left of 295 s; the profile only runs with 15 s or more left); a bench cut short keeps the runs it
# finished in its JSON. Most of a bench's time is building its group: CUDA graphs per bucket and span, and with
# compile on (the default) each bucket's elementwise ops compiled once.
# Smoke test on a CPU (tiny presets, Triton's interpreter; the profile is only byte-compiled):
#   SMOKE=1 bash scripts/gpu_streams_round.sh
# TESTS=0 and PROFILE=0 skip steps 1 and 4 (the sweep alone: ~170 s).
ROUND=streams_round
source "$(dirname "$0")/gpu_common.sh"
BUDGET_S=295
if [ "$SMOKE" = 1 ]; then export TRITON_INTERPRET=1; fi

after_step() {  # the summary (what each bench JSON says so far) and the one tarball
  $PY - "$RES" > "$RES/summary.txt" 2>&1 <<'PY'
import glob, json, os, sys

res = sys.argv[1]
for name in ("code.txt", "gpu.txt", "steps.txt"):
    if os.path.exists(os.path.join(res, name)):
        print(open(os.path.join(res, name)).read())
for path in sorted(glob.glob(os.path.join(res, "streams-*.json"))):
    try:
        data = json.load(open(path))
    except (OSError, ValueError) as err:
        print(os.path.basename(path), "unreadable:", err)
        continue
    print(f"{os.path.basename(path)}: {data.get('device')} attention={data.get('attention')} "
          f"llm_compiled={data.get('llm_compiled')} fallback={data.get('compile_fallback')} "
          f"build={data.get('group_build_s')} s graphs={data.get('llm_graphs')}")
    def ms(v):
        return "-" if v is None else f"{v:.1f}"

    for run in data.get("runs", []):
        t, seq, rt = run["throughput"], run.get("throughput_round_by_round", {}), run["realtime"]
        print(f"  N={run['streams']:2d} pipelined {t['aggregate_decided_fps']:8.2f} decided/s "
              f"x{t.get('speedup_vs_first', '?')} p50 {ms(t['worst_p50_ms'])} p99 {ms(t['worst_p99_ms'])} ms | "
              f"round by round {seq.get('aggregate_decided_fps')} x{seq.get('speedup_vs_first', '?')} "
              f"p99 {ms(seq.get('worst_p99_ms'))} ms | realtime "
              f"{rt['aggregate_decided_fps']}/{rt['offered_decided_fps']} decided/s dropped {rt['dropped_frames']} "
              f"p99 {ms(rt['worst_p99_ms'])} ms | gpu peak {run.get('gpu_peak_mib')} MiB")
    if "saturation" in data:
        print("  saturation:", json.dumps(data["saturation"]))
prof = os.path.join(res, "profile_streams.json")
if os.path.exists(prof):
    try:
        data = json.load(open(prof))
        for name, value in data.items():
            if isinstance(value, dict):
                print(f"profile {name}: llm_compiled={value.get('llm_compiled')} towers={json.dumps(value.get('towers'))}")
                print(f"  llm graph ms (BxSPAN): {json.dumps(value.get('llm'))}")
    except (OSError, ValueError) as err:
        print("profile_streams.json unreadable:", err)
PY
  cp "$RES/summary.txt" "$OUT/summary.txt"
  pack
}

# 1: correctness first (TESTS=0 skips it: a call that ran them already).
if [ "${TESTS:-1}" = 0 ]; then
  echo "tests: skipped (TESTS=0)" | tee -a "$RES/steps.txt"
else
  test_step $([ "$SMOKE" = 1 ] && echo 240 || echo 90) -x -q test/engine/test_batched_step.py \
    test/engine/test_decode_attention.py
fi

if [ "$SMOKE" = 1 ]; then
  BENCH="--device cpu"; P8=tiny; PL=tiny-lionfs
  ROUNDS="--stream-rounds 4 --prefill-rounds 2 --realtime-seconds 0.5"; COUNTS=1,2; COUNTS_L=1,2
else
  BENCH=""; P8=llama3-8b; PL=lionfs-8b
  # 40 camera rounds (10 decided frames a stream): 16 were too short (scripts/gpu_streams_regression.sh)
  ROUNDS="--stream-rounds 40 --prefill-rounds 8 --realtime-seconds 2"; COUNTS=1,2,4,8,16; COUNTS_L=1,8
fi
# 2 + 3: several streams (the kernel and the compiled elementwise ops in the batched step).
step streams-$P8 125 $PY -m lionfs_ros.commands.bench --preset $P8 $BENCH --streams $COUNTS $ROUNDS \
  --out "$RES/streams-$P8.json"
step streams-$PL 80 $PY -m lionfs_ros.commands.bench --preset $PL $BENCH --streams $COUNTS_L $ROUNDS \
  --out "$RES/streams-$PL.json"
# 4: where a round's time goes at B=8 (graphs per bucket and span), with what is left.
if [ "${PROFILE:-1}" = 0 ]; then
  echo "profile: skipped (PROFILE=0)" | tee -a "$RES/steps.txt"
elif [ "$SMOKE" = 1 ]; then
  step profile 30 $PY -m py_compile docs/benchmarks/profile_streams.py
else
  step profile 60 env OUT="$RES" STREAMS=8 $PY docs/benchmarks/profile_streams.py llama3-8b
fi
finish
