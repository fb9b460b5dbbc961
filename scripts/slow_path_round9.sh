#!/bin/bash
# Slow path round 9 on the GPU (issue 15), one device call: round 8's script (scripts/slow_path_round8.sh: the "on"
# model only, its control round 7's off model) with config/train/demo_slow_round9.yaml (regions at the objects' scale;
# the crop tower and reader trained on the proposer's own crops). Held-out accuracy of the reader on proposer crops
# is in run_on/crop_pretraining/summary.json (train_logs.tar.gz), before the stream training reads its tags.
# Run (device), after copying this tree into /work/main/.dev_slow as slow_path_round5.sh's header says:
#   run(command="cd .dev_slow && bash scripts/slow_path_round9.sh", carry=[".dev_slow", ".whl"], timeout_s=600)
# CPU smoke test: SMOKE=1 PY=$PWD/.venv/bin/python WHEELS= bash scripts/slow_path_round9.sh
export CONFIG=${CONFIG:-config/train/demo_slow_round9.yaml}
export W=${W:-/tmp/b15r9}
exec bash "$(dirname "$0")/slow_path_round8.sh"
