#!/bin/bash
# Slow path round 11 on the GPU (issue 15): round 10's recipe trained longer at a higher rate
# (config/train/demo_slow_round11.yaml: 480 stream steps, learning rate 6e-4, 14 loader workers), the two arms in two
# device calls at the same budget, each with round 10's chain (slow_path_round10.sh -> 8 -> 7 -> 6 -> 5):
#   on:  run(command="cd .dev_long && bash scripts/slow_path_round11.sh", carry=[".dev_long", ".whl"], timeout_s=560)
#   off: run(command="cd .dev_long && ARM=off bash scripts/slow_path_round11.sh", carry=[".dev_long", ".whl"],
#        timeout_s=560): the control, round 8's OFF settings on this config (same data and seeds, steps, rate, workers)
# after copying this tree into /work/main/.dev_long (git-ignored there):
#   rm -rf /work/main/.dev_long && mkdir /work/main/.dev_long && git -C <this checkout> archive HEAD | tar x -C /work/main/.dev_long
# Time guards (the call must end within ~540 s; round 9's on call: data 116 s, crop stage and the rest before the
# stream ~72 s, evaluation 61 s): the stream stage stops after 4.5 minutes (training.max_minutes, in the config and in
# ON_EXTRA, which would otherwise be round 8's 4.0), each training is killed after TRAIN_TIMEOUT=380 s, each evaluation
# after EVAL_TIMEOUT=80 s; no cost run. timeline.txt says how many steps each arm ran ("on: "global_step": N ...").
# Comes back under $OUT: timeline.txt, train_logs.tar.gz, results.tar.gz (val_ARM.json, held_ARM.json, logs),
# model_ARM.tar.gz.part_* (rejoin: cat model_ARM.tar.gz.part_* > model_ARM.tar.gz).
# Read (CPU, the on model): python scripts/region_tags_accuracy.py MODEL /tmp/h5_v900 --episodes 48;
#   python scripts/training_forks_audit.py MODEL /tmp/synth8 --episodes 8 (model_right against answer_in_tags).
# Measured (docs/RESULTS.md round 11): the on call 542 s, its stream stopped at 376 of 480 steps (the guard; 43 samples/s),
# so the control ran with EXTRA="--set training.max_steps=376" (348 s): equal steps, the schedules' tails differ.
# CPU smoke tests: SMOKE=1 PY=$PWD/.venv/bin/python WHEELS= bash scripts/slow_path_round11.sh  (and ARM=off ...)
export CONFIG=${CONFIG:-config/train/demo_slow_round11.yaml}
if [ "${ARM:-}" = off ]; then export W=${W:-/tmp/b15r11_off} ON_ONLY=0; else export W=${W:-/tmp/b15r11}; fi
if [ "${SMOKE:-0}" != 1 ]; then
  export TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-380} EVAL_TIMEOUT=${EVAL_TIMEOUT:-80} ON_EXTRA=${ON_EXTRA:-"--set training.max_minutes=4.5"}
fi
exec bash "$(dirname "$0")/slow_path_round10.sh"
