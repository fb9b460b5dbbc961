#!/bin/bash
# Issue 14's GPU round, run from the copied package (cd .dev_fast): PARTS="tests eval llama lionfs" (any subset).
# Everything lands in $OUT as it finishes: run.log, eval-native.json, eval-fp8.json, bench-*.json.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=. TOKENIZERS_PARALLELISM=false
PARTS=${PARTS:-"tests eval llama lionfs"}
LOG=$OUT/run.log
say() { echo "=== $* ($(date +%T))" | tee -a "$LOG"; }
say "start: $PARTS"
if ls whl/*.whl > /dev/null 2>&1; then  # packages the GPU image lacks (rapidfuzz for eval's text scores)
  python3 -m pip install -q --no-index --no-deps --target /tmp/site whl/*.whl && export PYTHONPATH=.:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv 2>&1 | tee -a "$LOG"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" 2>&1 | tee -a "$LOG"
for part in $PARTS; do
  case $part in
  tests)
    say tests
    timeout ${T_TESTS:-150} python3 -m pytest test/engine/test_quantization.py --noconftest -k cuda -q -s \
      -p no:cacheprovider 2>&1 | grep -v "DEBUG\|^$\|Warning\|warn" | tail -40 | tee -a "$LOG" ;;
  eval)
    say synth
    python3 -m lionfs_ros.cli synth --out /tmp/val --episodes ${EPISODES:-4} --seed 11 --split val >> "$LOG" 2>&1
    for w in native fp8; do
      say "eval $w"
      timeout ${T_EVAL:-150} python3 -m lionfs_ros.cli eval --data /tmp/val --json "$OUT/eval-$w.json" --device cuda --weights $w \
        2>&1 | grep -v Warning | tail -6 | tee -a "$LOG"
    done ;;
  llama)
    say "bench llama3-8b"
    timeout ${T_LLAMA:-240} python3 -m lionfs_ros.commands.bench --preset llama3-8b --prefill-frames 150 --frames 40 --new-tokens 64 \
      --variants graphs+compile+split,graphs+compile+split+fp8 --concurrent-variant graphs+compile+split \
      --out "$OUT/bench-llama3-8b-h200.json" > /dev/null 2>> "$LOG" ;;
  lionfs)
    say "bench lionfs-8b"
    timeout 300 python3 -m lionfs_ros.commands.bench --preset lionfs-8b --prefill-frames 150 --frames 30 --new-tokens 64 \
      --variants ${LIONFS_VARIANTS:-graphs+compile+split,graphs+compile+split+fp8} --concurrent-variant graphs+compile+split \
      --out "$OUT/bench-lionfs-8b-h200.json" > /dev/null 2>> "$LOG" ;;
  esac
done
say done
