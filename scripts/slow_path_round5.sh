#!/bin/bash
# Slow path round 5 on the GPU (issue 15), one device call: round 4's recipe with the slow path's crops read by a
# crop tower of the model's own, pretrained on crop -> label/shape/colour first (config/train/demo_slow_round5.yaml,
# `crop_pretraining`), beside its equal-budget control (data.thinking=none, no crop tower), trained side by side;
# BOTH evaluated on validation (seed 900) and held-out combinations (8 episodes), then (time left) the slow
# path's cost on a clean GPU. docs/RESULTS.md "Round 5".
#
# Run (device): copy this tree into /work/main/.dev_slow (git-ignored there; ~20 MB, under the 64 MiB a call carries):
#   rm -rf /work/main/.dev_slow && mkdir /work/main/.dev_slow && git -C <this checkout> archive HEAD | tar x -C /work/main/.dev_slow
# then
#   run(command="cd .dev_slow && bash scripts/slow_path_round5.sh", carry=[".dev_slow", ".whl"], timeout_s=450)
# It installs ../.whl/*.whl (rapidfuzz: `lionfs eval` needs it, the device lacks it) into /tmp/site first.
# Comes back under $OUT (4 files): timeline.txt, train_logs.tar.gz (as soon as training ends; with the crop
# tower's stage summary, run_on/crop_pretraining/summary.json), results.tar.gz (eval JSONs + eval/synth/cost
# logs + cost JSON), model_on.tar.gz (the "on" model only, crop tower included).
# Expected wall time on an H200 with 16 cores, from round 4's (289 s): wheels 1 s, data (1600 episodes) ~55 s,
# training: off ~100 s (then evaluated at once, while "on" trains), on ~220 s (crop objects of 1600 episodes
# ~30 s + crop pretraining <= 75 s by its guard crop_pretraining.max_minutes + ~115 s of stream training as
# in round 4), the on model's evaluation ~80 s (timeout EVAL_TIMEOUT 120 s), the cost run (~45 s) only if
# it can start before COST_BEFORE s: ~355 s, at most ~400 s by the guards (ask timeout_s=450).
# Correctness first: `lionfs train` refuses a config it cannot run before any data is made (CHECK step).
#
# CPU smoke test (tiny counts, every command run once):
#   SMOKE=1 PY=$PWD/.venv/bin/python WHEELS= bash scripts/slow_path_round5.sh
# Env: SMOKE SHARD_EPS VAL_EPS HELD_EPS DEVICE EXTRA (extra --set for both trainings) ON_EXTRA (the on run's only)
#      EVAL_TIMEOUT WORKERS COST_BEFORE WHEELS (empty: install nothing) CONFIG
#      OFF (the control's --set, default: data.thinking=none crop_pretraining=null)
#      ON_ONLY=1: train and evaluate the "on" model only (its control was trained by an earlier round's identical
#      command); ARM=off: the control only (its "on" model is another call's; model_off.tar.gz comes back instead);
#      TRAIN_TIMEOUT (s, default none): a hard limit on each training beside its max_minutes guards
set -u
export PYTHONUNBUFFERED=1
PY=${PY:-python3}; L="$PY -m lionfs_ros.cli"
W=${W:-/tmp/b15r5}; OUT=${OUT:-$W/out}; mkdir -p $W $OUT
CONFIG=${CONFIG:-config/train/demo_slow_round5.yaml}
WHEELS=${WHEELS-../.whl}; SITE=${SITE:-/tmp/site}
if [ "${SMOKE:-0}" = 1 ]; then
  SHARD_EPS=${SHARD_EPS:-1}; VAL_EPS=${VAL_EPS:-2}; HELD_EPS=${HELD_EPS:-1}; DEVICE=${DEVICE:-cpu}; WORKERS=${WORKERS:-1}
  EXTRA=${EXTRA:-"--set training.max_steps=2 --set training.warmup_steps=1 --set training.per_device_train_batch_size=2 --set training.dataloader_num_workers=0"}
  ON_EXTRA=${ON_EXTRA:-"--set crop_pretraining.steps=2 --set crop_pretraining.batch_size=8 --set crop_pretraining.holdout_episodes=2 --set crop_pretraining.workers=0"}
  EVAL_TIMEOUT=${EVAL_TIMEOUT:-900}; COST_BEFORE=${COST_BEFORE:-100000}
fi
SHARD_EPS=${SHARD_EPS:-100}; VAL_EPS=${VAL_EPS:-50}; HELD_EPS=${HELD_EPS:-8}; DEVICE=${DEVICE:-cuda}; EXTRA=${EXTRA:-}; ON_EXTRA=${ON_EXTRA:-}
EVAL_TIMEOUT=${EVAL_TIMEOUT:-120}; WORKERS=${WORKERS:-6}; COST_BEFORE=${COST_BEFORE:-340}
OFF=${OFF:-"--set data.thinking=none --set crop_pretraining=null"}
RUNS="on off"; [ "${ON_ONLY:-0}" = 1 ] && RUNS=on; [ "${ARM:-}" = off ] && RUNS=off
TRAIN_LIMIT=${TRAIN_TIMEOUT:+timeout $TRAIN_TIMEOUT}
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $OUT/timeline.txt; }

if [ -n "$WHEELS" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE $WHEELS/*.whl
  stamp "wheels installed (rc $?)"
fi
export PYTHONPATH=.:$SITE
$PY -c "import rapidfuzz" || stamp "WARNING: no rapidfuzz: the evaluations will fail"

# Correctness first: both training configs must load (a typo fails here, before any data is made).
for run in $RUNS; do
  set_off="$ON_EXTRA"; [ $run = off ] && set_off="$OFF"
  $PY -c "import sys; from lionfs_ros.train.config import TrainConfig; TrainConfig.load(sys.argv[1], sys.argv[2:])" \
    $CONFIG $(echo $set_off $EXTRA | sed 's/--set //g') || { stamp "CHECK FAILED: $CONFIG $set_off"; exit 1; }
done
stamp "configs checked ($RUNS)"

TRAIN=$W/synth_train_question_after
source "$(dirname "$0")/slow_path_data.sh"
synth_round_data $TRAIN; tail -n 2 $W/synth_0.log

for run in $RUNS; do
  set_off="$ON_EXTRA"; [ $run = off ] && set_off="$OFF"
  $TRAIN_LIMIT $L train --config $CONFIG --out $W/run_$run --set data.train=$TRAIN $set_off $EXTRA > $W/train_$run.log 2>&1 &
  eval "T_$run=\$!"
done
evaluate() {  # $1 = on | off: both splits, at once
  timeout $EVAL_TIMEOUT $L eval --model $W/run_$1/model --data $W/val900 --device $DEVICE --workers $WORKERS --json $W/val_$1.json > $W/eval_val_$1.log 2>&1 &
  timeout $EVAL_TIMEOUT $L eval --model $W/run_$1/model --data $W/held --device $DEVICE --workers 1 --json $W/held_$1.json > $W/eval_held_$1.log 2>&1 &
}
# The control has no crop pretraining, so it ends first: it is evaluated while the "on" model still trains.
if [ "$RUNS" != on ]; then wait $T_off; stamp "off trained (rc $?)"; fi
wait $VAL $HELD; stamp "eval data ready"; tail -n 2 $W/synth_val.log $W/synth_held.log
[ "$RUNS" != on ] && evaluate off
if [ "$RUNS" != off ]; then wait $T_on; stamp "on trained (rc $?)"; fi
for run in $RUNS; do stamp "$run: $(grep -ho '"global_step": [0-9]*\|"train_runtime_s": [0-9.]*\|"train_samples_per_second": [0-9.]*' $W/run_$run/train_summary.json | tr '\n' ' ')"; done
tail -n 3 $(ls $W/train_on.log $W/train_off.log 2>/dev/null); grep -s "crop pretraining:" $W/train_on.log
(cd $W && tar czf $OUT/train_logs.tar.gz train_*.log run_*/train_log.json run_*/train_summary.json run_*/train_config.yaml run_on/crop_pretraining/summary.json 2>/dev/null)
[ "$RUNS" != off ] && evaluate on
wait; stamp "evaluated"
tail -n 4 $W/eval_*.log
pack() { (cd $W && tar czf $OUT/results.tar.gz $(ls val_*.json held_*.json cost_on.json eval_*.log cost.log synth_val.log synth_held.log 2>/dev/null)); }
pack

left=$(( COST_BEFORE - ($(date +%s) - T0) ))
if [ $left -gt 0 ] && [ "$RUNS" != off ]; then  # the answer cost on a GPU nobody else uses now (round 3's shared the evaluations')
  timeout 60 $PY scripts/slow_path_cost.py $W/run_on/model auto $W/cost_on.json --data $W/val900 --episode val_000001 --device $DEVICE > $W/cost.log 2>&1
  stamp "cost measured (rc $?)"; tail -n 3 $W/cost.log; pack
else
  stamp "no time left for the cost run"
fi
keep=on; [ "$RUNS" = off ] && keep=off
(cd $W/run_$keep && tar czf $OUT/model_$keep.tar.gz model) && ls -la $OUT; stamp done
