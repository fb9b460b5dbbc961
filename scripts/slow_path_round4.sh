#!/bin/bash
# Slow path round 4 on the GPU (issue 15), one device call: the question restated after the template
# (config/train/demo_slow_question_after.yaml) and its equal-budget control (data.thinking=none)
# trained side by side, BOTH evaluated on validation (seed 900) and held-out combinations (8
# episodes), then (time left) the slow path's cost on a clean GPU. docs/RESULTS.md "Round 4".
#
# Run (device): copy this tree into /work/main/.dev_slow (git-ignored there; ~20 MB, under the 64 MiB a call carries):
#   rm -rf /work/main/.dev_slow && mkdir /work/main/.dev_slow && git -C <this checkout> archive HEAD | tar x -C /work/main/.dev_slow
# then
#   run(command="cd .dev_slow && bash scripts/slow_path_round4.sh", carry=[".dev_slow", ".whl"], timeout_s=450)
# It installs ../.whl/*.whl (rapidfuzz: `lionfs eval` needs it, the device lacks it) into /tmp/site first.
# Comes back under $OUT (4 files): timeline.txt, train_logs.tar.gz (as soon as training ends),
# results.tar.gz (eval JSONs + eval/synth/cost logs + cost JSON), model_on.tar.gz (the "on" model only).
# Estimated wall time on an H200 from round 3's numbers (data 18 s per 480 episodes on 16 cores, ~1.06
# steps/s with a 72-token template, evaluation ~110 s per model per 50 val episodes): wheels 5 s, data
# (1600 episodes) ~60 s, training ~130 s (slower forks: ~300 template tokens; guard max_minutes 2.6),
# evaluation (4 at once) ~120 s (timeout EVAL_TIMEOUT), packing 5 s: ~320 s; the cost run only starts
# before COST_BEFORE s (so the call stays under ~420 s).
#
# CPU smoke test (tiny counts, every command run once):
#   SMOKE=1 PY=$PWD/.venv/bin/python WHEELS=<dir of py3-none wheels> bash scripts/slow_path_round4.sh
# Env: SMOKE SHARD_EPS VAL_EPS HELD_EPS DEVICE EXTRA (extra --set for both trainings) EVAL_TIMEOUT WORKERS
#      COST_BEFORE WHEELS (empty: install nothing) CONFIG
set -u
export PYTHONUNBUFFERED=1
PY=${PY:-python3}; L="$PY -m lionfs_ros.cli"
W=${W:-/tmp/b15r4}; OUT=${OUT:-$W/out}; mkdir -p $W $OUT
CONFIG=${CONFIG:-config/train/demo_slow_question_after.yaml}
WHEELS=${WHEELS-../.whl}; SITE=${SITE:-/tmp/site}
if [ "${SMOKE:-0}" = 1 ]; then
  SHARD_EPS=${SHARD_EPS:-1}; VAL_EPS=${VAL_EPS:-2}; HELD_EPS=${HELD_EPS:-1}; DEVICE=${DEVICE:-cpu}; WORKERS=${WORKERS:-1}
  EXTRA=${EXTRA:-"--set training.max_steps=2 --set training.warmup_steps=1 --set training.per_device_train_batch_size=2 --set training.dataloader_num_workers=0"}
  EVAL_TIMEOUT=${EVAL_TIMEOUT:-900}; COST_BEFORE=${COST_BEFORE:-100000}
fi
SHARD_EPS=${SHARD_EPS:-100}; VAL_EPS=${VAL_EPS:-50}; HELD_EPS=${HELD_EPS:-8}; DEVICE=${DEVICE:-cuda}; EXTRA=${EXTRA:-}
EVAL_TIMEOUT=${EVAL_TIMEOUT:-160}; WORKERS=${WORKERS:-6}; COST_BEFORE=${COST_BEFORE:-320}
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $OUT/timeline.txt; }

if [ -n "$WHEELS" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE $WHEELS/*.whl
  stamp "wheels installed (rc $?)"
fi
export PYTHONPATH=.:$SITE
$PY -c "import rapidfuzz" || stamp "WARNING: no rapidfuzz: the evaluations will fail"

TRAIN=$W/synth_train_question_after
source "$(dirname "$0")/slow_path_data.sh"
synth_round_data $TRAIN; tail -n 2 $W/synth_0.log

for run in on off; do
  set_off=""; [ $run = off ] && set_off="--set data.thinking=none"
  $L train --config $CONFIG --out $W/run_$run --set data.train=$TRAIN $set_off $EXTRA > $W/train_$run.log 2>&1 &
  eval "T_$run=\$!"
done
wait $T_on; stamp "on trained (rc $?)"; wait $T_off; stamp "off trained (rc $?)"
tail -n 3 $W/train_on.log $W/train_off.log
(cd $W && tar czf $OUT/train_logs.tar.gz train_*.log run_*/train_log.json run_*/train_summary.json run_*/train_config.yaml 2>/dev/null)

wait $VAL $HELD; stamp "eval data ready"; tail -n 2 $W/synth_val.log $W/synth_held.log
for run in on off; do
  timeout $EVAL_TIMEOUT $L eval --model $W/run_$run/model --data $W/val900 --device $DEVICE --workers $WORKERS --json $W/val_$run.json > $W/eval_val_$run.log 2>&1 &
  timeout $EVAL_TIMEOUT $L eval --model $W/run_$run/model --data $W/held --device $DEVICE --workers 1 --json $W/held_$run.json > $W/eval_held_$run.log 2>&1 &
done
wait; stamp "evaluated"
tail -n 4 $W/eval_*.log
pack() { (cd $W && tar czf $OUT/results.tar.gz $(ls val_*.json held_*.json cost_on.json eval_*.log cost.log synth_val.log synth_held.log 2>/dev/null)); }
pack

left=$(( COST_BEFORE - ($(date +%s) - T0) ))
if [ $left -gt 0 ]; then  # the answer cost on a GPU nobody else uses now (round 3's shared the evaluations')
  timeout 60 $PY scripts/slow_path_cost.py $W/run_on/model auto $W/cost_on.json --data $W/val900 --episode val_000001 --device $DEVICE > $W/cost.log 2>&1
  stamp "cost measured (rc $?)"; tail -n 3 $W/cost.log; pack
else
  stamp "no time left for the cost run"
fi
(cd $W/run_on && tar czf $OUT/model_on.tar.gz model) && ls -la $OUT; stamp done
