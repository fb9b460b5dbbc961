"""Slow-path cost: one synthetic episode fed at its real rate to a threaded StreamEngine; time to
first token and answer time of the responses, and the frames the fast thread decided while an answer
was being written (the proof that the slow path does not stall the fast path). Prints JSON
(docs/RESULTS.md, "Slow path round 2" and "round 3").

    python scripts/slow_path_cost.py MODEL_DIR auto|on|off OUT.json [--data DIR --episode ID] [--device cuda]
"""
import argparse
import json
import time

import numpy as np
import torch

from lionfs_ros.data.synth import load_episode
from lionfs_ros.engine import EngineConfig, StreamEngine
from lionfs_ros.model import LionFSModel

KV_BUDGET = 3072  # lionfs_node's default: below the 4096-position backbone's limit with the template's tokens
SETTLE_S = 3.0  # after the last frame, time for the last answer to finish

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model")
parser.add_argument("slow_path", choices=("auto", "on", "off"))
parser.add_argument("out")
parser.add_argument("--data", default="/tmp/val900")
parser.add_argument("--episode", default="val_000001")
parser.add_argument("--device", default="cpu")
args = parser.parse_args()
if args.device == "cpu":
    torch.set_num_threads(1)
dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
model = LionFSModel.from_pretrained(args.model, device=args.device, dtype=dtype)
ep = load_episode(args.data, args.episode)
questions = sorted((q["time"], q["question"]) for q in json.load(open(f"{args.data}/episodes/{args.episode}.json"))["questions"])
engine = StreamEngine(model, EngineConfig(slow_path=args.slow_path, backend="dynamic", kv_budget_tokens=KV_BUDGET))
decisions, finals = [], []
engine.on_decision = lambda d: decisions.append((time.perf_counter(), d.frame_time))
engine.on_response = lambda u: u.is_final and finals.append((time.perf_counter(), u))
engine.start()
start = time.perf_counter()
for rgb, t in zip(ep.frames, ep.timestamps):
    delay = start + float(t) - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    while questions and questions[0][0] <= float(t):
        engine.ask(questions.pop(0)[1], float(t))  # asked at its time, as a user would
    engine.push_frame(rgb, float(t))
time.sleep(SETTLE_S)
engine.stop()
spans = [(at - u.generation_latency_s, at) for at, u in finals if not u.cancelled]
during = sum(1 for at, _ in decisions if any(a <= at <= b for a, b in spans))


def median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def summary(updates):
    return {"responses": len(updates), "ttft_s_median": median([u.time_to_first_token_s for u in updates]),
            "answer_s_median": median([u.generation_latency_s for u in updates]),
            "regions_per_response": float(np.mean([len(u.regions) for u in updates])) if updates else 0.0}


result = {
    "model": args.model, "slow_path": args.slow_path, "device": args.device, "responses": len(spans),
    "ttft_s_median": median([u.time_to_first_token_s for _, u in finals]),
    "answer_s_median": median([u.generation_latency_s for _, u in finals]),
    "regions_per_response": float(np.mean([len(u.regions) for _, u in finals])) if finals else 0.0,
    "answers": summary([u for _, u in finals if u.query is not None]),
    "narrations": summary([u for _, u in finals if u.query is None]),
    "regions_example": next((u.regions for _, u in finals if u.regions), []),
    "decided": len(decisions), "decided_while_answering": during,
    "seconds_answering": float(sum(b - a for a, b in spans)), "episode_s": float(ep.timestamps[-1]),
    "stats": {k: engine.stats()[k] for k in ("decided", "skipped", "dropped", "latency_p50_ms", "latency_p99_ms", "triggers_skipped")},
}
with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
print(json.dumps(result))
