"""Slow-path cost: one synthetic episode fed at its real rate to a threaded StreamEngine (CPU);
time to first token and answer time of the responses, frames decided while an answer was being
written. Prints JSON (docs/RESULTS.md, "Slow path round 2").

    python scripts/slow_path_cost.py MODEL_DIR auto|on|off OUT.json [DATASET EPISODE_ID]
"""
import json
import sys
import time

import numpy as np
import torch

from lionfs_ros.data.synth import load_episode
from lionfs_ros.engine import EngineConfig, StreamEngine
from lionfs_ros.model import LionFSModel

torch.set_num_threads(1)
model_dir, slow_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
dataset, episode_id = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else ("/tmp/val900", "val_000001")
KV_BUDGET = 3072  # below the 4096-position backbone's limit with the template's tokens
model = LionFSModel.from_pretrained(model_dir, device="cpu", dtype=torch.float32)
ep = load_episode(dataset, episode_id)
engine = StreamEngine(model, EngineConfig(slow_path=slow_path, backend="dynamic", kv_budget_tokens=KV_BUDGET))
decisions, finals = [], []
engine.on_decision = lambda d: decisions.append((time.perf_counter(), d.frame_time))
engine.on_response = lambda u: u.is_final and finals.append((time.perf_counter(), u))
engine.start()
start = time.perf_counter()
for rgb, t in zip(ep.frames, ep.timestamps):
    delay = start + float(t) - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    engine.push_frame(rgb, float(t))
time.sleep(3.0)  # let the last answer finish
engine.stop()
spans = [(at - u.generation_latency_s, at) for at, u in finals if not u.cancelled]
during = sum(1 for at, _ in decisions if any(a <= at <= b for a, b in spans))
result = {
    "model": model_dir, "slow_path": slow_path, "responses": len(spans),
    "ttft_s_median": float(np.median([u.time_to_first_token_s for _, u in finals if u.time_to_first_token_s is not None])),
    "answer_s_median": float(np.median([u.generation_latency_s for _, u in finals])),
    "regions_per_response": float(np.mean([len(u.regions) for _, u in finals])),
    "decided": len(decisions), "decided_while_answering": during,
    "seconds_answering": float(sum(b - a for a, b in spans)), "episode_s": float(ep.timestamps[-1]),
    "stats": {k: engine.stats()[k] for k in ("decided", "skipped", "dropped", "latency_p50_ms", "latency_p99_ms", "triggers_skipped")},
}
json.dump(result, open(out, "w"), indent=1)
print(json.dumps(result))
