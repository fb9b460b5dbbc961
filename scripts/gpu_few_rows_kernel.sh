#!/usr/bin/env bash
# The few-rows product on one GPU (issue 14), in one call, from a copy of the repository inside main's tree:
#   cd .dev_x && bash scripts/gpu_few_rows_kernel.sh
#   1. tests (where pytest is installed): the CUDA tests of test/engine/test_quantization.py (FP8 and bf16 weights
#      against the reference, one-launch split-K bit-identical with its counters back to zero, CUDA-graph replay,
#      the tuning keeping the faster of the kernel and cuBLAS, the engine deciding like native / like cuBLAS), plus
#      the interpreter-style tests run on the GPU;
#   2. scripts/few_rows_kernel_bench.py --parts micro: correctness, then per Llama-3-8B shape (and the output head)
#      at 1 and 11 rows the kernel on FP8 codes and on bf16 weights, cuBLAS bf16 and torch._scaled_mm: us and TB/s;
#   2b. (PARTS with "attn") scripts/attention_tiles_bench.py: the decode-attention kernel's candidate tiles for a
#      decided frame and a generated token at fills 700 / 1,500 / 3,000 (correct against float64, us per layer),
#      and the rotary + KV-write kernel against the compiled torch op;
#   2c. (PARTS with "tower") scripts/tower_speed_probe.py --parts profile,attention: the single-frame SigLIP tower's
#      graph, its kernels, and its attention under each SDPA backend;
#   2d. (PARTS with "timeline") scripts/frame_timeline_probe.py: a decided frame's end-to-end timeline (GPU busy,
#      idle gaps) for each of TIMELINE_VARIANTS (default: the default config and the same with PDL, variant +pdl);
#   3. lionfs bench --preset llama3-8b: graphs+compile+triton (the default: linear_kernel 'auto'), the same with
#      +cublas (every bf16 product by cuBLAS: the previous default) and +fp8, prefill 120, frames 30, new tokens 64
#      (as scripts/gpu_frame_round.sh);
#   4. lionfs eval of the bundled demo model on 3 validation episodes (seed 11), weights native and fp8 (the
#      default linear_kernel), as docs/benchmarks/eval-demo-fp8-h200.json was made;
#   5. (PARTS with "profile") scripts/few_rows_kernel_bench.py --parts profile: the token and frame steps' kernels,
#      native (the default linear_kernel) and fp8.
# PARTS picks the steps (default "tests micro bench eval"); VARIANTS the bench's; EVAL_W the eval's weights (default
# "native fp8"); TESTS_EXTRA more test files.
# BUDGET_S (default 500) bounds the whole round: each step's limit is cut to what is left. Expected on an H200:
# ~80 + 60 + 200 + 90 s. Raw results go to $RES; after EVERY step all of them are packed into ONE tarball
# $OUT/results.tar.gz, and $OUT/summary.txt holds the step statuses and the headline numbers.
# Smoke test on a CPU (Triton's interpreter, tiny shapes and presets): SMOKE=1 OUT=/tmp/fr_out bash scripts/gpu_few_rows_kernel.sh
ROUND=few_rows_kernel
BUDGET_S=${BUDGET_S:-500}
PARTS=${PARTS:-"tests micro bench eval"}  # any of: tests micro attn tower timeline bench eval profile (in this order)
TESTS_EXTRA=${TESTS_EXTRA:-}  # more test files for step 1 (their CUDA tests and any named by -k); TESTS: the first
source "$(dirname "$0")/gpu_common.sh"
if [ "$SMOKE" = 1 ]; then export TRITON_INTERPRET=1; fi

after_step() {  # summary.txt: the steps, then the numbers that matter from each JSON there is; the tarball
  { cat "$RES/steps.txt"; $PY - "$RES" <<'PY'
import json, sys

sys.path.insert(0, "scripts")
from gpu_summary import print_benches, results

res, load = results()

micro = load("micro.json")
if micro:
    print(f"micro on {micro.get('device')}")
    for name, s in micro.get("shapes", {}).items():
        for rows in ("rows_1", "rows_11"):
            r = s.get(rows, {})
            cells = [f"{lab} {r[lab]['us']:.2f} us {r[lab]['tb_per_s']:.2f} TB/s" for lab in
                     ("fp8_kernel", "fp8_other_upcast", "bf16_kernel", "cublas_bf16", "scaled_mm") if "us" in r.get(lab, {})]
            checks = {lab: (r.get(lab, {}).get("ok"), r.get(lab, {}).get("config")) for lab in ("fp8_kernel", "bf16_kernel")}
            pick = r.get("tune_bf16", {}).get("config")
            print(f"  {name} {s['shape']} {rows}: ok/config {checks} bf16 pick {pick} | " + "; ".join(cells))
tiles = load("attention_tiles.json")
if tiles:
    print(f"attention tiles on {tiles.get('device')}: all correct {tiles.get('all_ok')}")
    for case, e in tiles.get("cases", {}).items():
        for fill, b in e.get("best", {}).items():
            print(f"  {case} fill {fill}: default {b['default_us']:.2f} us {b['default_tiles']} | best "
                  f"{b['best_us'] or float('nan'):.2f} us {b['best_tiles']}")
    for r in tiles.get("rope", []):
        print(f"  rope M={r['positions']}: torch {r.get('torch_us_per_layer', float('nan')):.2f} us, kernel "
              f"{r.get('kernel_us_per_layer', float('nan')):.2f} us per layer, q diff {r['q_max_abs_vs_torch']}")
prof = load("profile.json")
for weights, p in (prof or {}).items():
    if not isinstance(p, dict):
        continue
    print(f"profile {prof.get('preset')} {weights}: build {p.get('build_s')} s, tune {p.get('tune_s')} s")
    for kind in ("token", "frame"):
        e = p.get(kind)
        if e:
            print(f"  {kind} step {e['step_ms']:.3f} ms (context {e['context_tokens']}), kernels/step "
                  f"{e['kernels_per_step']:.0f}, device us/step {e['device_us_per_step']:.0f}")
            for t in e["top"][:14]:
                print(f"    {t['us_per_step']:9.1f} us x{t['calls_per_step']:6.1f}  {t['name'][:100]}")

def numbers(d, prefix=""):  # every numeric leaf of an eval JSON but timings, by path
    if isinstance(d, dict):
        for key, v in d.items():
            if key not in ("responses", "fast_path_ms_per_frame"):
                yield from numbers(v, f"{prefix}{key}.")
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield prefix[:-1], float(d)


evals = {w: load(f"eval-{w}.json") for w in ("native", "fp8")}
if all(evals.values()):
    a, b = dict(numbers(evals["native"])), dict(numbers(evals["fp8"]))
    diffs = {k: abs(a[k] - b[k]) for k in a.keys() & b.keys()}
    worst = max(diffs, key=diffs.get) if diffs else None
    same_text = [r.get("text") for r in evals["native"].get("responses", [])] == [
        r.get("text") for r in evals["fp8"].get("responses", [])]
    print(f"eval native vs fp8: {len(diffs)} metrics, largest difference {worst} {diffs.get(worst)}; "
          f"trigger_f1 {a.get('trigger_f1')} / {b.get('trigger_f1')}; responses' texts identical: {same_text}")
print_benches(res, ("llama3-8b", "tiny"))
PY
  } > "$OUT/summary.txt" 2>&1
  pack
}

if [ "$SMOKE" = 1 ]; then
  KB="--smoke"; BENCH="--device cpu"; P8=tiny; SIZES="--prefill-frames 4 --frames 4 --new-tokens 4"; DEV=cpu
  VARIANTS=${VARIANTS:-graphs+compile+triton,graphs+compile+triton+cublas}; EPISODES=1; EVAL_W=native
else
  KB=""; BENCH=""; P8=llama3-8b; SIZES="--prefill-frames 120 --frames 30 --new-tokens 64"; DEV=cuda
  VARIANTS=${VARIANTS:-graphs+compile+triton,graphs+compile+triton+cublas,graphs+compile+triton+fp8}; EPISODES=3
  EVAL_W=${EVAL_W:-"native fp8"}
fi

has() { case " $PARTS " in *" $1 "*) return 0;; esac; return 1; }
# 1: correctness first (a CPU without CUDA skips the GPU tests and runs the kernel's on the interpreter).
has tests && test_step ${T_TESTS:-90} -v ${TESTS:-test/engine/test_quantization.py} $TESTS_EXTRA \
  -k "cuda or split_k or plain_weight or cublas or graph or silu or kernel or decides or static or camera"
# 2: the kernel alone (correctness, then timings).
has micro && step micro ${T_MICRO:-80} $PY scripts/few_rows_kernel_bench.py $KB --parts micro --out "$RES"
# 2b: the decode-attention kernel's tiles and the rotary + KV-write kernel (scripts/attention_tiles_bench.py).
has attn && step attn ${T_ATTN:-120} $PY scripts/attention_tiles_bench.py $KB --out "$RES"
# 2c: the single-frame SigLIP tower: its graph's kernels and the SDPA backends (scripts/tower_speed_probe.py).
has tower && step tower ${T_TOWER:-90} $PY scripts/tower_speed_probe.py --parts profile,attention --out "$RES/tower"
# 2d: a decided frame's end-to-end timeline (scripts/frame_timeline_probe.py) for each of TIMELINE_VARIANTS (default:
# the default config and the same with PDL); results in timeline-<i>/ in that order.
if has timeline; then
  i=0
  for v in ${TIMELINE_VARIANTS:-graphs+compile+triton graphs+compile+triton+pdl}; do
    step timeline-$i ${T_TIMELINE:-90} $PY scripts/frame_timeline_probe.py --preset $P8 $BENCH --variant $v \
      --out "$RES/timeline-$i"
    i=$((i + 1))
  done
fi
# 3: the engine (the default first; +cublas and +fp8 are compared with the naive loop, fp8 also with the default).
has bench && step bench-$P8 ${T_BENCH:-220} $PY -m lionfs_ros.commands.bench --preset $P8 $BENCH $SIZES \
  --variants $VARIANTS --concurrent-variant graphs+compile+triton --out "$RES/bench-$P8.json"
# 4: the demo model's evaluation, native vs fp8.
if has eval; then
  step synth 30 $PY -m lionfs_ros.cli synth --out "$RES/val" --episodes $EPISODES --seed 11 --split val
  for w in $EVAL_W; do
    step eval-$w ${T_EVAL:-60} $PY -m lionfs_ros.cli eval --data "$RES/val" --json "$RES/eval-$w.json" --device $DEV --weights $w
  done
  rm -rf "$RES/val"
fi
# 5: the token and frame steps' kernels.
has profile && step profile ${T_PROFILE:-100} $PY scripts/few_rows_kernel_bench.py $KB --parts profile \
  --weights ${PROFILE_WEIGHTS:-native,fp8} --out "$RES"
finish
