#!/bin/bash
# Slow path round 12 on the GPU (issue 15), one device call: can round 11's LLM learn to copy the region tags with
# ~30x the CPU's budget? Three jobs on round 11's "on" model, side by side, then their evaluations:
#   copy:  scripts/copy_curriculum_probe.py: the lookup alone, synthetic forks in the template's exact format (random
#          tagged objects, real box-token features), COPY_STEPS steps of 32; its curve on fresh sequences says
#          whether this LLM can learn the lookup at all, its audit / validation copy whether that carries over;
# and the fork stage (train.fork_stage, config fork_stage): the LLM alone trained on the slow-path forks of 512
# training episodes (frozen parts cached once), two arms at the same budget, evaluated on validation (seed 900) and
# held-out combinations (8 episodes) beside the starting model:
#   on:    config/train/demo_slow_round12.yaml: fork_stage.relabel 1.0 (each sample seen with its tagged printed
#          labels swapped for others, in the tags and the answer alike: only the copy predicts the answer), the
#          main context's targets kept in the loss (main_weight 1.0);
#   plain: the same with --set fork_stage.relabel=0.0 (the fork-focused stage alone; same samples, steps, rate);
#   base:  round 11's on model, unchanged (evaluated only: its numbers of round 11, on this call's data).
# Run (device): copy this tree and round 11's on model into /work/main/.dev_x (git-ignored there):
#   rm -rf /work/main/.dev_x && mkdir /work/main/.dev_x && git -C <this checkout> archive HEAD | tar x -C /work/main/.dev_x
#   cp -r /work/briefs/s6/r11/on/m/model /work/main/.dev_x/r11_on_model      # 20 MB; with the tree and ../.whl ~48 MB
#   run(command="cd .dev_x && bash scripts/slow_path_round12.sh", carry=[".dev_x", ".whl"], timeout_s=560)
# Correctness first: both arms' configs are loaded (a typo fails before any data is made); each training is killed
# after TRAIN_TIMEOUT s (fork_stage.max_minutes also stops it, saving the model), each evaluation after EVAL_TIMEOUT.
# Comes back under $OUT: timeline.txt, train_logs.tar.gz (train logs, fork_stage/summary.json: loss curve, steps),
# results.tar.gz (val_ARM.json, held_ARM.json, eval logs), model_on.tar.gz.part_* (cat ... > model_on.tar.gz).
# Also under $OUT: copy_summary.json (the copy task's curve and audit), rta_ARM.json (region_tags_accuracy on the
# validation episodes: "copy" = label / part-colour questions tagged right and answered right), audit_ARM.json
# (training_forks_audit on shard_00's first 8 episodes = /tmp/synth8: model_right against answer_in_tags).
# Expected on an H200 with 16 cores ~400 s (not measured there): data ~30 s, the arms' samples cached ~60 s, their
# 600 steps x 8 ~100-150 s (the stage stops at 3 minutes), evaluations ~100 s, the CPU readouts ~80 s; bounded by the
# guards at ~490 s (data 30 + training 300 + readouts 150 + packing).
# CPU smoke test (tiny counts, every command once; run: rc 0, 678 s under load, with main_weight 0; the fork stage with
# main_weight 1 also ran alone on the smoke data): SMOKE=1 PY=$PWD/.venv/bin/python WHEELS= bash scripts/slow_path_round12.sh
# Env: SMOKE SHARD_EPS VAL_EPS HELD_EPS DEVICE WORKERS EXTRA (--set for both arms) BASE (the starting model dir)
#      COPY_STEPS COPY_ARGS COPY_TIMEOUT RTA_EPS AUDIT_EPS RTA_TIMEOUT (the readouts on the CPU)
#      TRAIN_TIMEOUT EVAL_TIMEOUT WHEELS (empty: install nothing) CONFIG W OUT
set -u
export PYTHONUNBUFFERED=1
PY=${PY:-python3}; L="$PY -m lionfs_ros.cli"
W=${W:-/tmp/b15r12}; OUT=${OUT:-$W/out}; mkdir -p $W $OUT
CONFIG=${CONFIG:-config/train/demo_slow_round12.yaml}
BASE=${BASE:-$PWD/r11_on_model}
WHEELS=${WHEELS-../.whl}; SITE=${SITE:-/tmp/site}
if [ "${SMOKE:-0}" = 1 ]; then
  SHARD_EPS=${SHARD_EPS:-1}; VAL_EPS=${VAL_EPS:-2}; HELD_EPS=${HELD_EPS:-1}; DEVICE=${DEVICE:-cpu}; WORKERS=${WORKERS:-1}
  BASE=${SMOKE_BASE:-/work/briefs/s6/r11/on/m/model}; TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-900}; EVAL_TIMEOUT=${EVAL_TIMEOUT:-900}
  EXTRA=${EXTRA:-"--set fork_stage.steps=2 --set fork_stage.batch_size=1 --set fork_stage.episodes=2 --set fork_stage.workers=0 --set fork_stage.warmup_steps=1"}
  COPY_STEPS=${COPY_STEPS:-2}; COPY_ARGS=${COPY_ARGS:-"--batch 2 --eval 4 --eval-every 1"}; RTA_EPS=${RTA_EPS:-2}; AUDIT_EPS=${AUDIT_EPS:-1}; RTA_TIMEOUT=${RTA_TIMEOUT:-900}
fi
COPY_STEPS=${COPY_STEPS:-3000}; COPY_ARGS=${COPY_ARGS:-"--batch 32 --eval 400 --eval-every 250"}; COPY_TIMEOUT=${COPY_TIMEOUT:-300}
RTA_EPS=${RTA_EPS:-48}; AUDIT_EPS=${AUDIT_EPS:-8}; RTA_TIMEOUT=${RTA_TIMEOUT:-150}
SHARD_EPS=${SHARD_EPS:-32}; VAL_EPS=${VAL_EPS:-50}; HELD_EPS=${HELD_EPS:-8}; DEVICE=${DEVICE:-cuda}; WORKERS=${WORKERS:-4}
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-300}; EVAL_TIMEOUT=${EVAL_TIMEOUT:-110}; EXTRA=${EXTRA:-}
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a $OUT/timeline.txt; }
declare -A SET=([on]="" [plain]="--set fork_stage.relabel=0.0")

if [ -n "$WHEELS" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE $WHEELS/*.whl
  stamp "wheels installed (rc $?)"
fi
export PYTHONPATH=.:$SITE
$PY -c "import rapidfuzz" || stamp "WARNING: no rapidfuzz: the evaluations will fail"
[ -f $BASE/model.safetensors ] || { stamp "NO BASE MODEL at $BASE (copy round 11's on model there)"; exit 1; }

# Correctness first: both arms' configs load (a typo fails here, before any data is made).
for arm in on plain; do
  $PY -c "import sys; from lionfs_ros.train.config import TrainConfig; TrainConfig.load(sys.argv[1], sys.argv[2:])" \
    $CONFIG model.init_from=$BASE $(echo ${SET[$arm]} $EXTRA | sed 's/--set //g') || { stamp "CHECK FAILED: $arm"; exit 1; }
done
stamp "configs checked (on, plain)"

TRAIN=$W/synth_train  # the first SHARD_EPS episodes of each of round 11's training shards (seeds 100-115)
source "$(dirname "$0")/slow_path_data.sh"
synth_round_data $TRAIN
# The copy task (its own GPU job; shard_00 = seed 100: its first 8 episodes are /tmp/synth8, the audit's).
timeout $COPY_TIMEOUT $PY scripts/copy_curriculum_probe.py $BASE $TRAIN/shard_00 $W/copy --steps $COPY_STEPS --lr 1e-3 \
  --device $DEVICE $COPY_ARGS > $W/copy.log 2>&1 &
T_copy=$!

for arm in on plain; do
  timeout $TRAIN_TIMEOUT $L train --config $CONFIG --out $W/run_$arm --set model.init_from=$BASE --set data.train=$TRAIN \
    ${SET[$arm]} $EXTRA > $W/train_$arm.log 2>&1 &
  eval "T_$arm=\$!"
done
evaluate() {  # $1 = arm, $2 = model dir: both splits, at once
  timeout $EVAL_TIMEOUT $L eval --model $2 --data $W/val900 --device $DEVICE --workers $WORKERS --json $W/val_$1.json > $W/eval_val_$1.log 2>&1 &
  timeout $EVAL_TIMEOUT $L eval --model $2 --data $W/held --device $DEVICE --workers 1 --json $W/held_$1.json > $W/eval_held_$1.log 2>&1 &
}
wait $VAL $HELD; stamp "eval data ready"
evaluate base $BASE  # while the arms train
for arm in on plain; do
  eval "wait \$T_$arm"; stamp "$arm trained (rc $?): $(grep -ho '"steps": [0-9]*\|"runtime_s": [0-9.]*\|"cache_s": [0-9.]*\|"last_loss": [0-9.]*' $W/run_$arm/fork_stage/summary.json | tr '\n' ' ')"
  tail -n 2 $W/train_$arm.log
done
(cd $W && tar czf $OUT/train_logs.tar.gz train_*.log run_*/train_summary.json run_*/train_config.yaml run_*/fork_stage/summary.json 2>/dev/null)
for arm in on plain; do evaluate $arm $W/run_$arm/model; done
readout() {  # $1 = arm, $2 = model dir: the tags' copy on validation, the audit of its training forks (CPU)
  timeout $RTA_TIMEOUT $PY scripts/region_tags_accuracy.py $2 $W/val900 --episodes $RTA_EPS --out $W/rta_$1_full.json > $W/rta_$1.log 2>&1 &
  timeout $RTA_TIMEOUT $PY scripts/training_forks_audit.py $2 $TRAIN/shard_00 --episodes $AUDIT_EPS > $OUT/audit_$1.json 2>$W/audit_$1.log &
}
for arm in on plain; do readout $arm $W/run_$arm/model; done
wait $T_copy; stamp "copy task done (rc $?)"; tail -n 4 $W/copy.log; cp $W/copy/summary.json $OUT/copy_summary.json 2>/dev/null
[ -f $W/copy/model/model.safetensors ] && readout copy $W/copy/model
wait; stamp "evaluated"
tail -n 3 $W/eval_*.log; tail -qn 1 $W/rta_*.log; cat $OUT/audit_*.json
for f in $W/rta_*_full.json; do  # without the per-question rows
  [ -f $f ] && $PY -c "import json,sys; d=json.load(open(sys.argv[1])); d.pop('questions',None); json.dump(d,open(sys.argv[2],'w'),indent=1)" $f $OUT/$(basename $f _full.json).json
done
(cd $W && tar czf $OUT/results.tar.gz $(ls val_*.json held_*.json eval_*.log rta_*.log audit_*.log copy.log synth_val.log synth_held.log 2>/dev/null))
(cd $W/run_on && tar czf $OUT/model_on.tar.gz model) && split -b 15M $OUT/model_on.tar.gz $OUT/model_on.tar.gz.part_ \
  && rm $OUT/model_on.tar.gz
ls -la $OUT; stamp done
