#!/usr/bin/env bash
# The weight-only FP8 product on one GPU (issue 14), in one call, from a copy of the repository inside main's tree:
#   cd .dev_x && bash scripts/gpu_fp8_kernel.sh
#   1. tests (where pytest is installed): the CUDA tests of test/engine/test_quantization.py (kernel vs reference,
#      one-launch split-K bit-identical with its counters back to zero, CUDA-graph replay, the engine deciding
#      like native), plus the interpreter-style split-K tests run on the GPU;
#   2. scripts/fp8_kernel_bench.py --parts micro: correctness, then per Llama-3-8B shape at 1 and 11 rows the old
#      kernel (main's file, $OLD, default ../lionfs_ros/engine/kernels/fp8_linear.py), the new one, cuBLAS bf16 and
#      torch._scaled_mm: microseconds and TB/s;
#   3. scripts/fp8_kernel_bench.py --parts profile: llama3-8b, weights fp8, static backend: the build's tuning time,
#      one generated-token step's wall time and torch.profiler's top kernels per token step;
#   4. lionfs bench --preset llama3-8b: graphs+compile+triton and graphs+compile+triton+fp8, prefill 120, frames 30,
#      new tokens 64 (as scripts/gpu_frame_round.sh): the fp8 variant's frame p50 and tokens/s.
# Expected wall time on an H200: ~230 s; each step is bounded by `timeout` (70 + 50 + 65 + 110 s: at most ~300 s with
# the start). Raw results go to $RES (default a new /tmp/fp8_kernel.*); after EVERY step all of them are packed into ONE
# tarball $OUT/results.tar.gz, and $OUT/summary.txt holds the step statuses and the headline numbers.
# Smoke test on a CPU (Triton's interpreter, tiny shapes and presets): SMOKE=1 OUT=/tmp/fp8_out bash scripts/gpu_fp8_kernel.sh
ROUND=fp8_kernel
source "$(dirname "$0")/gpu_common.sh"
OLD=${OLD:-../lionfs_ros/engine/kernels/fp8_linear.py}
if [ ! -f "$OLD" ] && git rev-parse --git-dir >/dev/null 2>&1; then  # no main tree around: main's file from git
  git show main:lionfs_ros/engine/kernels/fp8_linear.py > "$RES/fp8_linear_main.py" 2>/dev/null && OLD=$RES/fp8_linear_main.py
fi
if [ "$SMOKE" = 1 ]; then export TRITON_INTERPRET=1; fi
echo "old kernel: $OLD" | tee -a "$RES/steps.txt"

after_step() {  # summary.txt: the steps, then the numbers that matter from each JSON there is; the tarball
  { cat "$RES/steps.txt"; $PY - "$RES" <<'PY'
import json, os, sys

res = sys.argv[1]


def load(name):
    try:
        return json.load(open(os.path.join(res, name)))
    except (OSError, ValueError):
        return None


micro = load("micro.json")
if micro:
    print(f"micro on {micro.get('device')}: old kernel {micro.get('old_kernel')} (same as new: {micro.get('old_is_new')})")
    for name, s in micro.get("shapes", {}).items():
        for rows in ("rows_1", "rows_11"):
            r = s.get(rows, {})
            cells = [f"{lab} {r[lab]['us']:.2f} us {r[lab]['tb_per_s']:.2f} TB/s" for lab in
                     ("old", "new", "new_other_upcast", "cublas_bf16", "scaled_mm") if "us" in r.get(lab, {})]
            new = r.get("new", {})
            print(f"  {name} {s['shape']} {rows}: ok={new.get('ok')} rel={new.get('rel_error')} config={new.get('config')}"
                  f" tune_s={r.get('tune', {}).get('seconds')} | " + "; ".join(cells))
prof = load("profile.json")
if prof:
    print(f"profile {prof.get('preset')} {prof.get('weights')}: build {prof.get('build_s')} s, tune {prof.get('tune_s')} s,"
          f" token step {prof.get('token_step_ms')} ms (context {prof.get('context_tokens')}), kernels/step "
          f"{prof.get('kernels_per_step')}, device us/step {prof.get('device_us_per_step')}")
    for e in prof.get("top", [])[:12]:
        print(f"  {e['us_per_step']:9.1f} us x{e['calls_per_step']:6.1f}  {e['name'][:110]}")
for preset in ("llama3-8b", "tiny"):
    d = load(f"bench-{preset}.json")
    if not d:
        continue
    for name, v in d.get("variants", {}).items():
        fast, slow = v.get("fast", {}), v.get("slow", {})
        print(f"{preset} {name}: frame p50 {fast.get('p50_ms')} p99 {fast.get('p99_ms')} ms; slow "
              f"{slow.get('tokens_per_second')} tokens/s; breakdown {json.dumps(v.get('breakdown_ms'))}; "
              f"equality {json.dumps(v.get('equality_vs_bf16_engine') or v.get('equality'))[:200]}; error {v.get('error')}")
    for key in ("fp8", "weight_floor"):
        if key in d:
            print(f"{preset} {key}: {json.dumps(d[key])[:500]}")
PY
  } > "$OUT/summary.txt" 2>&1
  pack
}

if [ "$SMOKE" = 1 ]; then
  KB="--smoke"; BENCH="--device cpu"; P8=tiny; SIZES="--prefill-frames 4 --frames 4 --new-tokens 4"
else
  KB=""; BENCH=""; P8=llama3-8b; SIZES="--prefill-frames 120 --frames 30 --new-tokens 64"
fi

# 1: correctness first (a CPU without CUDA skips the GPU tests and runs the kernel's on the interpreter).
test_step ${T_TESTS:-70} -x -v --noconftest test/engine/test_quantization.py -k "cuda or split_k"
# 2 + 3: the kernel alone (correctness, then timings), then one token step of the 8B backbone.
step micro ${T_MICRO:-50} $PY scripts/fp8_kernel_bench.py $KB --parts micro --old "$OLD" --out "$RES"
step profile ${T_PROFILE:-65} $PY scripts/fp8_kernel_bench.py $KB --parts profile --out "$RES"
# 4: the engine (the bf16 default first, then fp8: the fp8 variant is compared with it).
step bench-$P8 ${T_BENCH:-110} $PY -m lionfs_ros.commands.bench --preset $P8 $BENCH $SIZES \
  --variants graphs+compile+triton,graphs+compile+triton+fp8 --concurrent-variant graphs+compile+triton \
  --out "$RES/bench-$P8.json"
finish
