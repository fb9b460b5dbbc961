#!/bin/bash
# Slow path round 10 on the GPU (issue 15), one device call: round 8's script (scripts/slow_path_round8.sh: the "on"
# model only, its control round 7's off model) with config/train/demo_slow_round10.yaml: round 9's recipe with the
# crop reader's fourth head, the colour of an object's part (crop_pretraining.part_colour), written into the tags
# (" white jar with green lid"). Why: 21 of the 59 validation detail questions ask a cap's or a lid's colour and
# round 9's tags (whole tag right on 0.91 of regions) carried none. Cost over round 9: one more linear head in the
# crop stage, ~3 text tokens on regions read as a bottle or jar. Held-out accuracy of the part's colour on proposer
# crops: run_on/crop_pretraining/summary.json (held_out_after.part_colour, in train_logs.tar.gz).
# Read it (CPU, the returned model): python scripts/region_tags_accuracy.py MODEL /tmp/h5_v900 --episodes 48
# (by_type.patch_colour.b_patch, b_holding_region_tagged_asked, c_reader.part_colour).
# Run (device), after copying this tree into /work/main/.dev_slow as slow_path_round5.sh's header says:
#   run(command="cd .dev_slow && bash scripts/slow_path_round10.sh", carry=[".dev_slow", ".whl"], timeout_s=600)
# CPU smoke test: SMOKE=1 PY=$PWD/.venv/bin/python WHEELS= bash scripts/slow_path_round10.sh
export CONFIG=${CONFIG:-config/train/demo_slow_round10.yaml}
export W=${W:-/tmp/b15r10}
exec bash "$(dirname "$0")/slow_path_round8.sh"
