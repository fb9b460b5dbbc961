# What every scripts/gpu_*.sh round does first, and how it runs a step. Sourced, not run:
#   ROUND=frame_round; source "$(dirname "$0")/gpu_common.sh"
# Leaves the repository root as the working directory and sets:
#   OUT   where results come back (the device's $OUT; a new folder elsewhere);
#   RES   where the raw results go (given, or a new /tmp/$ROUND.XXXXXX), with steps.txt and gpu.txt;
#   PY    the interpreter ($PYTHON or python3); SMOKE (0 or 1);
#   PYTHONPATH  the copy, and /tmp/site where the wheels of ../.whl (packages the GPU image lacks: rosbags,
#         rapidfuzz) are carried beside the copy and installed there.
# A round defines `after_step` (default: `pack`), run after every step, and may set BUDGET_S before its first
# step: each step's limit is then cut to what is left of it since the start, and a step left under 15 s is skipped.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-$(mktemp -d)}
RES=${RES:-$(mktemp -d "/tmp/$ROUND.XXXXXX")}
mkdir -p "$OUT" "$RES"
if [ -d ../.whl ] && ls ../.whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ../.whl/*.whl
  export PYTHONPATH=.:/tmp/site
else
  export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
fi
PY=${PYTHON:-python3}
SMOKE=${SMOKE:-0}
START=$(date +%s)
echo "out: $OUT results: $RES (smoke=$SMOKE)" | tee "$RES/steps.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RES/gpu.txt" 2>&1 || true
$PY - >> "$RES/gpu.txt" 2>&1 <<'PY'
import importlib

for name in ("torch", "transformers", "triton"):
    try:
        print(name, importlib.import_module(name).__version__)
    except ImportError:
        print(name, "not installed")
PY
# which code ran: the commit only where this folder is a checkout's root (a copy inside another checkout is not)
if [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$(pwd -P)" ]; then git log -1 --format='%H %s' > "$RES/code.txt"; fi
cat lionfs_ros/engine/*.py lionfs_ros/engine/*/*.py | sha256sum | sed 's/^/engine sources sha256 /' >> "$RES/code.txt"

pack() {  # every raw result in ONE tarball (written aside, then moved: a cut call never leaves half a tarball)
  tar -czf "$OUT/results.tar.gz.part" -C "$RES" . && mv "$OUT/results.tar.gz.part" "$OUT/results.tar.gz"
}

after_step() { pack; }

step() {  # step NAME SECONDS CMD...: run with a time bound, log to $RES/NAME.log, note the exit status, after_step
  local name=$1 limit=$2; shift 2
  if [ -n "${BUDGET_S:-}" ]; then
    local left=$(( BUDGET_S - ($(date +%s) - START) ))
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    if [ "$limit" -lt 15 ]; then
      echo "$name: skipped (${left} s left of ${BUDGET_S})" | tee -a "$RES/steps.txt"
      after_step
      return
    fi
  fi
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$RES/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc $(( $(date +%s) - t0 )) s (limit $limit s)" | tee -a "$RES/steps.txt"
  tail -n 5 "$RES/$name.log"
  after_step
}

test_step() {  # test_step SECONDS PYTEST_ARGS...: step "tests" where pytest is installed (the device may lack it)
  local limit=$1; shift
  if $PY -c "import pytest" 2>/dev/null; then
    step tests "$limit" $PY -m pytest -p no:cacheprovider "$@"
  else
    echo "tests: skipped (no pytest)" | tee -a "$RES/steps.txt"
  fi
}

finish() {  # the end of a round: its total time, the last after_step, the summary where the round writes one
  echo "done $(date +%T), total $(( $(date +%s) - START )) s" | tee -a "$RES/steps.txt"
  after_step
  if [ -f "$OUT/summary.txt" ]; then cat "$OUT/summary.txt"; fi
}
