#!/usr/bin/env bash
# End to end on a GPU: a VideoLLM-online v1+ checkpoint of real size (random weights, release
# layout) -> `lionfs convert videollm-online` -> `lionfs replay` of a synthetic 640x480 bag on CUDA,
# then `lionfs bench --preset llama3-8b` (the engine's default variant) for the decision latency to
# compare with. Each stage prints one JSON line with its seconds as soon as it ends, and copies its
# result into RESULTS (when set) at once, so a run cut short still leaves the finished stages.
#
# Usage: scripts/gpu_videollm_online_e2e.sh WORK [SIZE]
#   SIZE: 8b (default; ~20 GB of disk in WORK, a GPU) or tiny (a CPU check of the whole chain).
# Environment: PYTHON (default python3), DEVICE (default cuda for 8b, cpu for tiny),
#   LLAMA3_TOKENIZER (a Llama-3 tokenizer directory; default: built from the llama-models package),
#   ACTIONS (actions in the synthetic episode replayed, default 3: a bag of about 19 s),
#   FRAME_SIZE (the bag's camera size, default 640x480), RESULTS (a directory for the stage results),
#   BENCH_ARGS (extra `lionfs bench` arguments).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:?usage: $0 WORK [8b|tiny]}"
SIZE="${2:-8b}"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-$([ "$SIZE" = 8b ] && echo cuda || echo cpu)}"
ACTIONS="${ACTIONS:-3}"
FRAME_SIZE="${FRAME_SIZE:-640x480}"
RESULTS="${RESULTS:-$WORK/results}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
lionfs() { "$PY" -m lionfs_ros.cli "$@"; }
mkdir -p "$WORK" "$RESULTS"
STARTED=$(date +%s.%N)
LAST=$STARTED
stage() {  # stage NAME [JSON fields]: one line on stdout and in RESULTS/stages.jsonl
  local now line
  now=$(date +%s.%N)
  line=$("$PY" -c "import json, sys; print(json.dumps({'stage': sys.argv[1], 's': round(float(sys.argv[2]) - float(sys.argv[3]), 1), 'total_s': round(float(sys.argv[2]) - float(sys.argv[4]), 1), **json.loads(sys.argv[5])}))" \
    "$1" "$now" "$LAST" "$STARTED" "${2:-{\}}")
  echo "$line" | tee -a "$RESULTS/stages.jsonl"
  LAST=$now
}

tokenizer_args=()
[ -n "${LLAMA3_TOKENIZER:-}" ] && tokenizer_args=(--tokenizer "$LLAMA3_TOKENIZER")
[ -d "$WORK/release/trainer" ] || "$PY" "$ROOT/scripts/videollm_online_release.py" --out "$WORK/release" --size "$SIZE" \
  --device "$DEVICE" "${tokenizer_args[@]}"
stage release "{\"disk_gb\": $(du -s --block-size=1G "$WORK/release" | cut -f1)}"

lionfs convert videollm-online --adapter "$WORK/release/trainer" --llm "$WORK/release/llm" \
  --vision "$WORK/release/siglip" --out "$WORK/model"
stage convert

[ -d "$WORK/synth" ] || lionfs synth --out "$WORK/synth" --episodes 1 --seed 7 --bag --actions "$ACTIONS" --size "$FRAME_SIZE"
bag=$(find "$WORK/synth" -name '*.mcap' | head -1)
stage synth "{\"bag\": \"$(basename "$bag")\", \"frame_size\": \"$FRAME_SIZE\"}"

lionfs replay "$bag" --report "$WORK/report" --model "$WORK/model" --device "$DEVICE" --no-progress
cp "$WORK/report/report.json" "$RESULTS/replay-report.json"
stage replay "$("$PY" - "$WORK/report/report.json" <<'PYEOF'
import json, sys
report = json.load(open(sys.argv[1]))
metrics = report["metrics"]
keep = {"frames": metrics.get("frames"), "latency": metrics.get("latency"), "timing": metrics.get("timing")}
print(json.dumps({k: v for k, v in keep.items() if v is not None}))
PYEOF
)"

if [ "$DEVICE" != cpu ]; then
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of words
  lionfs bench --preset llama3-8b --mode speed --device "$DEVICE" --variants graphs+compile+split \
    --prefill-frames 60 --frames 40 --new-tokens 64 ${BENCH_ARGS:-} --out "$RESULTS/bench.json" >/dev/null
  stage bench "$("$PY" -c "import json; b = json.load(open('$RESULTS/bench.json')); print(json.dumps({'fast_path': b.get('fast_path'), 'slow_path': b.get('slow_path')}))")"
fi
