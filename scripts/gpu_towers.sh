#!/bin/bash
# Vision towers and the exact resize on the graph path (issues 14 and 19), one GPU call, from a copy of the
# repository: `cd .dev_x && bash scripts/gpu_towers.sh`. Expected wall time on an H200 about 180 s; every step
# has its own timeout (together 240 s at most). Results land in $OUT as each step ends: run.log (first the CUDA
# test of test/engine/test_fused_tower.py); correctness/towers.json (resize equal to Pillow, tokens vs an fp32
# copy and vs the HF forward); timings/towers.json (old vs new graphs, resize, whole calls, batches 1-16, SDPA backends);
#   profile/towers.json (top GPU ops of one eager forward, old vs new); bench-llama3-8b.json, bench-lionfs-8b.json
#   (`lionfs bench`, default variant, small frame counts: the decided-frame p50 and the stage breakdown).
# SMOKE=1: the same steps on the CPU with tiny towers (no benches), to check the script itself.
set -u
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-./gpu_towers_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
if ls ../.whl/*.whl > /dev/null 2>&1; then  # packages the GPU image lacks (rosbags, rapidfuzz)
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ../.whl/*.whl \
    && export PYTHONPATH=.:/tmp/site
fi
LOG=$OUT/run.log
say() { echo "=== $* ($(date +%T))" | tee -a "$LOG"; }
if [ "${SMOKE:-0}" = 1 ]; then
  TB="--smoke --device cpu"
else
  TB="--device cuda"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG"
fi
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" 2>&1 | tee -a "$LOG"
if [ "${SMOKE:-0}" != 1 ]; then  # the engine's graphed towers against the model's own forward (tiny fp32 models)
  say "tests (timeout ${T_TESTS:-30} s)"
  timeout ${T_TESTS:-30} $PY -m pytest test/engine/test_fused_tower.py -q -x -p no:cacheprovider 2>&1 | tail -4 | tee -a "$LOG"
fi
for part in correctness timings profile; do
  case $part in correctness) limit=${T_CORRECT:-40};; timings) limit=${T_TIMINGS:-50};; profile) limit=${T_PROFILE:-20};; esac
  say "towers: $part (timeout $limit s)"
  timeout $limit $PY scripts/tower_bench.py $TB --parts $part --out "$OUT/$part" 2>&1 | grep -v "^USDT\|Warning\|warn(" | tee -a "$LOG"
done
if [ "${SMOKE:-0}" != 1 ]; then
  for preset in llama3-8b lionfs-8b; do
    say "bench $preset (timeout ${T_BENCH:-50} s)"
    timeout ${T_BENCH:-50} $PY -m lionfs_ros.commands.bench --preset $preset --prefill-frames 20 --frames 20 --new-tokens 16 \
      --variants graphs+compile+split --out "$OUT/bench-$preset.json" 2>&1 | grep -v "Warning\|warn(" | tail -25 >> "$LOG"
    $PY - "$OUT/bench-$preset.json" <<'PYEOF' 2>&1 | tee -a "$LOG"
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except (OSError, ValueError) as err:
    sys.exit(f"no bench JSON: {err}")
for name, v in d.get("variants", {}).items():
    keep = {k: v.get(k) for k in ("compile_fallback", "fast", "ego_only", "breakdown_ms", "equality") if k in v}
    print(name, json.dumps(keep)[:1500])
PYEOF
  done
fi
say done
