#!/bin/bash
# Slow path round 7 on the GPU (issue 15), one device call: round 6's script (scripts/slow_path_round6.sh: round 5's
# data, on/off pair, evaluations and cost, the on model back in 15 MiB parts) with config/train/demo_slow_round7.yaml
# (round 6's recipe with 4 extra detail questions per episode on forks, detail answers weighted 5x in the LM loss)
# and its control, which also sets data.extra_detail_questions=0 and
# training.detail_answer_weight=1.0 (it has no forks). docs/RESULTS.md "Round 7 (prepared)".
# Run (device), after copying this tree into /work/main/.dev_slow as slow_path_round5.sh's header says:
#   run(command="cd .dev_slow && bash scripts/slow_path_round7.sh", carry=[".dev_slow", ".whl"], timeout_s=600)
# Expected: round 6's ~500 s on an H200 with 16 cores plus the extra forks' cost (not measured: ~290 tokens and
# 4 crops each, 4 an episode); training.max_minutes (5) caps the stream training, the evaluations are unchanged.
# CPU smoke test: SMOKE=1 PY=$PWD/.venv/bin/python WHEELS= bash scripts/slow_path_round7.sh
# Every environment variable of slow_path_round5.sh and slow_path_round6.sh applies.
export CONFIG=${CONFIG:-config/train/demo_slow_round7.yaml}
export W=${W:-/tmp/b15r7}
export OFF=${OFF:-"--set data.thinking=none --set crop_pretraining=null --set data.extra_detail_questions=0 --set training.detail_answer_weight=1.0"}
exec bash "$(dirname "$0")/slow_path_round6.sh"
