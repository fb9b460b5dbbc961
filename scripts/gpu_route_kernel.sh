#!/usr/bin/env bash
# Token dropping's routing in two Triton launches (issue 14, kernels/token_routing.py) on one GPU, in one call, from
# a copy of the repository:
#   cd .dev_x && bash scripts/gpu_route_kernel.sh
#   1. tests (where pytest is installed; correctness first): the routing kernels against the torch routing (float32 and
#      bf16, ties, several frames), the tie rule against CUDA's topk, the engine with and without the kernels (CUDA
#      graphs); the decode-attention kernel's tests (their engines route with the kernels now), the static backend's
#      CUDA-graph test (compiled, against the dynamic backend) and the model's token dropping;
#   2. scripts/route_bench.py: bf16 agreement of the kernels with the torch routing over 300 random feeds per layout,
#      then one routed layer's routing old vs new (CUDA graph of 16 routed layers, replay p50, us per layer; the route
#      kernel's tile/warps tried);
#   3. lionfs bench --preset lionfs-8b exactly as scripts/gpu_frame_round.sh runs it: graphs+compile+triton (now with
#      the routing kernels) and its +nodrop in one run (dropping_on_over_off_p50), prefill 100, frames 30, new tokens 32.
# Expected wall time on an H200: ~230 s (tests ~80, route bench ~35, lionfs bench ~110); each step is bounded by
# `timeout` (110 + 60 + 125 s: at most ~300 s with the wheel install). Raw results go to $RES (default a new
# /tmp/route_kernel.*); after EVERY step all of them are packed into ONE tarball $OUT/results.tar.gz, and
# $OUT/summary.txt holds the step statuses and the headline numbers.
# Smoke test on a CPU (Triton's interpreter, tiny sizes, tiny preset): SMOKE=1 OUT=/tmp/rk_out bash scripts/gpu_route_kernel.sh
ROUND=route_kernel
source "$(dirname "$0")/gpu_common.sh"

after_step() {  # summary.txt: the steps, then the numbers that matter from each JSON there is; the tarball
  { cat "$RES/steps.txt"; grep -E "passed|failed|error" "$RES/tests.log" 2>/dev/null | tail -n 3; $PY - "$RES" <<'PY'
import json, sys

sys.path.insert(0, "scripts")
from gpu_summary import print_benches, results

res, load = results()

route = load("route/route.json")
if route:
    agree = route.get("agreement", {})
    print("route agreement ok:", agree.get("ok"), json.dumps({k: {x: v.get(x) for x in (
        "feeds", "kept_equal", "boundary_logit_gaps", "gathers_and_slots_equal", "stream_equal",
        "next_norm_max_abs_diff")} for k, v in agree.items() if isinstance(v, dict)})[:700])
    for name, row in route.get("timing", {}).items():
        if isinstance(row, dict):
            print(f"route timing {name}: {json.dumps(row)[:600]}")
print_benches(res, ("lionfs-8b", "tiny-lionfs"))
PY
  } > "$OUT/summary.txt" 2>&1
  pack
}

if [ "$SMOKE" = 1 ]; then
  TESTS="test/engine/test_token_routing.py test/model/test_token_dropping.py"
  RB="--smoke --device cpu"; BENCH="--device cpu"; PL=tiny-lionfs; SIZES_L="--prefill-frames 4 --frames 4 --new-tokens 4"
else
  TESTS="test/engine/test_token_routing.py test/engine/test_decode_attention.py test/model/test_token_dropping.py
         test/engine/test_static_backend.py::test_cuda_graphs_with_dropping_and_ego_decide_like_the_dynamic_backend"
  RB="--device cuda"; BENCH=""; PL=lionfs-8b
  SIZES_L="--prefill-frames 100 --frames 30 --new-tokens 32"  # 4 camera frames per decided one (ego at 8 fps)
fi

# 1: correctness first (pytest may be absent on the device: then route_bench's agreement part is the check).
test_step ${T_TESTS:-110} -q -rs $TESTS
# 2: the kernels' bf16 agreement, then old vs new routing per layer.
step route ${T_ROUTE:-60} $PY scripts/route_bench.py $RB --out "$RES/route"
# 3: the engine, dropping on (the routing kernels) and off in one run, as scripts/gpu_frame_round.sh runs it.
step bench-$PL ${T_BENCH_L:-125} $PY -m lionfs_ros.commands.bench --preset $PL $BENCH $SIZES_L \
  --variants graphs+compile+triton,graphs+compile+triton+nodrop --concurrent-variant graphs+compile+triton \
  --out "$RES/bench-$PL.json"
finish
