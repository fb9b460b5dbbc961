#!/bin/bash
# Slow path round 3 on the GPU (issue 15): data, the on/off pair side by side, evaluation on
# validation (seed 900) and held-out combinations, the slow path's cost. Run from .dev_slow.
# Env: SHARD_EPS VAL_EPS DEVICE EXTRA (extra --set for both trainings) EVAL_TIMEOUT WORKERS
set -u
export PYTHONPATH=. PYTHONUNBUFFERED=1
PY=${PY:-python3}; L="$PY -m lionfs_ros.cli"
W=${W:-/tmp/b15run}; OUT=${OUT:-$W/out}; mkdir -p $W $OUT
SHARD_EPS=${SHARD_EPS:-30}; VAL_EPS=${VAL_EPS:-50}; DEVICE=${DEVICE:-cuda}; EXTRA=${EXTRA:-}
EVAL_TIMEOUT=${EVAL_TIMEOUT:-120}; WORKERS=${WORKERS:-6}
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
TRAIN=$W/synth_train_answers
HELD_EPS=8
source "$(dirname "$0")/slow_path_data.sh"
synth_round_data $TRAIN; tail -n 2 $W/synth_0.log
for run in on off; do
  set_off=""; [ $run = off ] && set_off="--set data.thinking=none"
  $L train --config config/train/demo_slow_answers.yaml --out $W/run_$run --set data.train=$TRAIN $set_off $EXTRA > $W/train_$run.log 2>&1 &
  eval "T_$run=\$!"
done
wait $T_on; stamp "on trained (rc $?)"; wait $T_off; stamp "off trained (rc $?)"
tail -n 3 $W/train_on.log $W/train_off.log
(cd $W && tar czf $OUT/train_logs.tar.gz train_*.log run_*/train_log.json run_*/train_summary.json run_*/train_config.yaml 2>/dev/null)
wait $VAL $HELD; stamp "eval data ready"; tail -n 2 $W/synth_val.log
for run in on off; do
  timeout $EVAL_TIMEOUT $L eval --model $W/run_$run/model --data $W/val900 --device $DEVICE --workers $WORKERS --json $OUT/val_$run.json > $W/eval_val_$run.log 2>&1 &
  timeout $EVAL_TIMEOUT $L eval --model $W/run_$run/model --data $W/held --device $DEVICE --workers 1 --json $OUT/held_$run.json > $W/eval_held_$run.log 2>&1 &
done
timeout $EVAL_TIMEOUT $PY scripts/slow_path_cost.py $W/run_on/model auto $OUT/cost_on.json --data $W/val900 --episode val_000001 --device $DEVICE > $W/cost.log 2>&1 &
wait; stamp "evaluated"
tail -n 4 $W/eval_*.log $W/cost.log
(cd $W && tar czf $OUT/eval_logs.tar.gz eval_*.log cost.log synth_val.log)
(cd $W/run_on && tar czf $OUT/model_on.tar.gz model) && ls -la $OUT; stamp done
