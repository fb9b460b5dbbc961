#!/usr/bin/env bash
# End to end on a GPU: a VideoLLM-online v1+ checkpoint of real size (random weights, release
# layout) -> `lionfs convert videollm-online` -> `lionfs replay` of a synthetic bag on CUDA, then
# `lionfs bench --preset llama3-8b` for the decision latency to compare with. Prints one JSON line
# per stage result; everything lands in WORK.
#
# Usage: scripts/gpu_videollm_online_e2e.sh WORK [SIZE]
#   SIZE: 8b (default; ~40 GB of disk in WORK, a GPU) or tiny (a CPU check of the whole chain).
# Environment: PYTHON (default python3), DEVICE (default cuda for 8b, cpu for tiny),
#   LLAMA3_TOKENIZER (a Llama-3 tokenizer directory; default: built from the llama-models package),
#   ACTIONS (actions in the synthetic episode replayed, default 3 for tiny, 10 for 8b).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:?usage: $0 WORK [8b|tiny]}"
SIZE="${2:-8b}"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-$([ "$SIZE" = 8b ] && echo cuda || echo cpu)}"
ACTIONS="${ACTIONS:-$([ "$SIZE" = 8b ] && echo 10 || echo 3)}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
lionfs() { "$PY" -m lionfs_ros.cli "$@"; }
stamp() { date +%s.%N; }
mkdir -p "$WORK"

t0=$(stamp)
tokenizer_args=()
[ -n "${LLAMA3_TOKENIZER:-}" ] && tokenizer_args=(--tokenizer "$LLAMA3_TOKENIZER")
[ -d "$WORK/release/trainer" ] || "$PY" "$ROOT/scripts/videollm_online_release.py" --out "$WORK/release" --size "$SIZE" \
  --device "$DEVICE" "${tokenizer_args[@]}"
t1=$(stamp)
lionfs convert videollm-online --adapter "$WORK/release/trainer" --llm "$WORK/release/llm" \
  --vision "$WORK/release/siglip" --out "$WORK/model"
t2=$(stamp)
[ -d "$WORK/synth" ] || lionfs synth --out "$WORK/synth" --episodes 1 --seed 7 --bag --actions "$ACTIONS"
bag=$(find "$WORK/synth" -name '*.mcap' | head -1)
lionfs replay "$bag" --report "$WORK/report" --model "$WORK/model" --device "$DEVICE" --no-progress
t3=$(stamp)
"$PY" - "$WORK/report/report.json" "$t0" "$t1" "$t2" "$t3" "$SIZE" "$DEVICE" <<'PYEOF'
import json, sys
report, (t0, t1, t2, t3) = json.load(open(sys.argv[1])), map(float, sys.argv[2:6])
metrics = report["metrics"]
print(json.dumps({"stage": "replay", "size": sys.argv[6], "device": sys.argv[7],
                  "release_s": round(t1 - t0, 1), "convert_s": round(t2 - t1, 1), "replay_s": round(t3 - t2, 1),
                  "frames": metrics.get("frames"), "latency": metrics.get("latency"), "timing": metrics.get("timing")}))
PYEOF
if [ "$SIZE" = 8b ]; then
  lionfs bench --preset llama3-8b --mode speed --device "$DEVICE" --out "$WORK/bench.json" >/dev/null
  "$PY" -c "import json; print(json.dumps({'stage': 'bench', **json.load(open('$WORK/bench.json'))}))"
fi
