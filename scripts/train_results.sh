#!/usr/bin/env bash
# Reproduces docs/RESULTS.md's round-1 table on one GPU machine: the round-1 demo model and its two
# ablations trained side by side from their configs (same data, same steps), then `lionfs eval` of
# each on a validation split generated with a seed never used in training (train seeds 100-115,
# val seed 900). RUNS="demo ablation_general_only ablation_no_dropping" trains today's recipe (frame
# pretraining, then the stream: the round-3 table) instead.
#   bash scripts/train_results.sh OUT_DIR [VAL_EPISODES] [MAX_MINUTES]
# MAX_MINUTES guards a leased machine: a run still going after that long stops and saves.
set -euo pipefail
OUT=${1:?usage: train_results.sh OUT_DIR [VAL_EPISODES] [MAX_MINUTES]}
VAL_EPISODES=${2:-50}
MAX_MINUTES=${3:-6}
VAL=${LIONFS_VAL:-/tmp/lionfs/synth_val}
EVAL_WORKERS=${EVAL_WORKERS:-4}
RUNS=${RUNS:-round1_demo round1_ablation_general_only round1_ablation_no_dropping}
FIRST=${RUNS%% *}
LIONFS="python3 -m lionfs_ros.cli"
mkdir -p "$OUT"
stamp() { echo "[$(date +%H:%M:%S)] $*"; }

stamp "data: train shards and frame cache (from $FIRST.yaml), $VAL_EPISODES val episodes (seed 900)"
[ -f "$VAL/manifest.json" ] || $LIONFS synth --out "$VAL" --split val --episodes "$VAL_EPISODES" --seed 900 >/dev/null 2>&1 &
rm -rf "$OUT/prepare"
$LIONFS train --config "config/train/$FIRST.yaml" --out "$OUT/prepare" --set training.max_steps=1 \
  --set frame_pretraining=null --set training.report_to=[] > "$OUT/prepare.log" 2>&1
wait
stamp "training: $RUNS"
for run in $RUNS; do
  rm -rf "$OUT/$run"
  $LIONFS train --config "config/train/$run.yaml" --out "$OUT/$run" --set training.max_minutes="$MAX_MINUTES" \
    > "$OUT/$run.train.log" 2>&1 &
done
wait
stamp "eval on $VAL"
for run in $RUNS; do
  timeout "${EVAL_SECONDS:-240}" $LIONFS eval --model "$OUT/$run/model" --data "$VAL" --workers "$EVAL_WORKERS" \
    --json "$OUT/$run.eval.json" > "$OUT/$run.eval.log" 2>&1 &
done
wait || true
stamp done
