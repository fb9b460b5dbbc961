#!/usr/bin/env bash
# The decided frame's non-LLM stages on one GPU (issue 14, round 2), in one call, from a copy of the repository:
#   cd .dev_x && bash scripts/gpu_frame_round.sh
#   1. tests (where pytest is installed): the graphed towers (compiled resize = Pillow's pixels), both towers from
#      one upload + the graphed connectors/router against model.embed_frames, the engine's CUDA graphs with
#      dropping and ego against the dynamic backend (tiny float32 models);
#   2. scripts/tower_bench.py --parts correctness,frame: resize (plain, compiled, graphed) equal to Pillow, tokens vs
#      fp32; then where a decided frame's preprocessing goes (host copy, upload, resize plain vs compiled, both
#      towers with two uploads vs one);
#   3. lionfs bench --preset lionfs-8b: graphs+compile+triton (default) and its +nodrop (dropping_on_over_off_p50),
#      prefill 100, frames 30, new tokens 32;
#   4. lionfs bench --preset llama3-8b: graphs+compile+triton and graphs+compile+triton+fp8, prefill 120, frames 30,
#      new tokens 64.
# Expected wall time on an H200: ~280 s; each step is bounded by `timeout` (55 + 45 + 115 + 110 s: at most ~330 s with
# the start). Raw results go to $RES (default a new /tmp/frame_round.*); after EVERY step all of them are packed into ONE
# tarball $OUT/results.tar.gz, and $OUT/summary.txt holds the step statuses and the headline numbers.
# Smoke test on a CPU (tiny towers, tiny presets): SMOKE=1 OUT=/tmp/fr_out bash scripts/gpu_frame_round.sh
ROUND=frame_round
source "$(dirname "$0")/gpu_common.sh"

after_step() {  # summary.txt: the steps, then the numbers that matter from each JSON there is; the tarball
  { cat "$RES/steps.txt"; $PY - "$RES" <<'PY'
import json, sys

sys.path.insert(0, "scripts")
from gpu_summary import print_benches, results

res, load = results()

towers = load("towers/towers.json")
if towers:
    for name, parts in towers.get("towers", {}).items():
        c = parts.get("correctness", {})
        print(f"towers {name}: ok={c.get('ok')} resize={c.get('resize')} fallback={c.get('resize_compile_fallback')} "
              f"compiled={c.get('compiled')}")
    if "frame" in towers:
        print("frame costs:", json.dumps(towers["frame"]))
print_benches(res, ("lionfs-8b", "llama3-8b", "tiny-lionfs", "tiny"))
PY
  } > "$OUT/summary.txt" 2>&1
  pack
}

if [ "$SMOKE" = 1 ]; then
  TB="--smoke --device cpu"; BENCH="--device cpu"; PL=tiny-lionfs; P8=tiny
  SIZES_L="--prefill-frames 4 --frames 4 --new-tokens 4"; SIZES_8=$SIZES_L
else
  TB="--device cuda"; BENCH=""; PL=lionfs-8b; P8=llama3-8b
  SIZES_L="--prefill-frames 100 --frames 30 --new-tokens 32"  # 4 camera frames per decided one (ego at 8 fps)
  SIZES_8="--prefill-frames 120 --frames 30 --new-tokens 64"
fi

# 1: correctness first (a CPU without CUDA skips the GPU tests; pytest may be absent on the device).
test_step ${T_TESTS:-55} -x -q test/engine/test_fused_tower.py \
  "test/engine/test_static_backend.py::test_cuda_graphs_with_dropping_and_ego_decide_like_the_dynamic_backend" \
  -k "graphed or decided or cuda_graphs"
# 2: the towers' correctness, then the frame's preprocessing costs.
step towers ${T_TOWERS:-45} $PY scripts/tower_bench.py $TB --parts correctness,frame --out "$RES/towers"
# 3 + 4: the engine (the default variant first: a timeout cuts the comparison, not it).
step bench-$PL ${T_BENCH_L:-115} $PY -m lionfs_ros.commands.bench --preset $PL $BENCH $SIZES_L \
  --variants graphs+compile+triton,graphs+compile+triton+nodrop --concurrent-variant graphs+compile+triton \
  --out "$RES/bench-$PL.json"
step bench-$P8 ${T_BENCH_8:-110} $PY -m lionfs_ros.commands.bench --preset $P8 $BENCH $SIZES_8 \
  --variants graphs+compile+triton,graphs+compile+triton+fp8 --concurrent-variant graphs+compile+triton \
  --out "$RES/bench-$P8.json"
finish
