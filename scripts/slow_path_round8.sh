#!/bin/bash
# Slow path round 8 on the GPU (issue 15), one device call: round 7's script (scripts/slow_path_round7.sh -> round 6's
# -> round 5's: data, training, evaluation on validation and held-out, the on model back in 15 MiB parts) with
# config/train/demo_slow_round8.yaml (round 7's recipe with the crop reader's tags written after each region's box
# tokens: data.keyframes.region_tags) and the "on" model ONLY (ON_ONLY=1): its control is round 7's off model,
# trained by the identical command, whose results are in docs/RESULTS.md "round 7". docs/RESULTS.md "Round 8 (prepared)".
# Run (device), after copying this tree into /work/main/.dev_slow as slow_path_round5.sh's header says:
#   run(command="cd .dev_slow && bash scripts/slow_path_round8.sh", carry=[".dev_slow", ".whl"], timeout_s=600)
# Expected on an H200 with 16 cores: ~490 s (round 7's call, docs/RESULTS.md: data 133 s; its "on" run 338 s beside
# the control, ~100 s of them before the stream (examples, crop objects, the crop stage) and 240 stream steps in
# 236 s; alone, with the tags (~20 text tokens a fork, a reader pass on grids the tower computes anyway) ~310 s;
# evaluation ~47 s). No cost run (COST_BEFORE=0). Guards: the crop stage 75 s, the stream training 4 min
# (training.max_minutes=4.0 here: round 7's 240 steps took 236 s beside the control; the log says how many ran),
# the training killed after TRAIN_TIMEOUT=420 s, each evaluation after 120 s.
# Comes back under $OUT: timeline.txt, train_logs.tar.gz, results.tar.gz (val_on.json, held_on.json, logs),
# model_on.tar.gz.part_* (rejoin: cat model_on.tar.gz.part_* > model_on.tar.gz).
# CPU smoke test: SMOKE=1 PY=$PWD/.venv/bin/python WHEELS= bash scripts/slow_path_round8.sh
# Every environment variable of slow_path_round5.sh, _round6.sh and _round7.sh applies.
export CONFIG=${CONFIG:-config/train/demo_slow_round8.yaml}
export W=${W:-/tmp/b15r8}
export ON_ONLY=${ON_ONLY:-1}
if [ "${SMOKE:-0}" = 1 ]; then export TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-1800}  # the smoke test runs the cost script too
else export TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-420} COST_BEFORE=${COST_BEFORE:-0} ON_EXTRA=${ON_EXTRA:-"--set training.max_minutes=4.0"}; fi
export OFF=${OFF:-"--set data.thinking=none --set crop_pretraining=null --set data.extra_detail_questions=0 --set training.detail_answer_weight=1.0 --set data.keyframes.region_tags=false"}
exec bash "$(dirname "$0")/slow_path_round7.sh"
