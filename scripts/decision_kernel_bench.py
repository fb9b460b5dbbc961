"""The decided frame's decision, model rule against the engine's kernel, on one Llama-3-sized logits row (issue 14).

``model.stream_decision`` (float copy, softmax, argmax, then the engine's stack and read-back) against
``kernels/stream_decision.stream_decision_row`` with a kept workspace (as ``FastThinker.decide`` calls it), each
timed twice, in alternation: wall microseconds per decision read back to the host, host microseconds per launch
without read-back, and the GPU's time per call over the same launches (CUDA events; where the launches are slower
than the kernels, this is the launch rate). Both results are printed side by side (they must be equal).

    PYTHONPATH=. python3 scripts/decision_kernel_bench.py --out DIR    # a CUDA GPU with Triton; ~20 s
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lionfs_ros.engine.kernels.stream_decision import stream_decision_row
from lionfs_ros.model.modeling_lionfs import stream_decision

VOCAB = 128256  # Llama-3's
INTERVAL = 128001  # any id: the decision's interval token
THRESHOLD = 0.7
WARMUP, REPS = 20, 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    logits = torch.randn(VOCAB, device="cuda").to(torch.bfloat16)
    workspace: dict = {}

    def rule_launch():
        return stream_decision(logits, INTERVAL, THRESHOLD)

    def rule():
        p, respond, top = rule_launch()
        return torch.stack([p, respond.float(), top.float()]).tolist()

    def kernel_launch():
        return stream_decision_row(logits, INTERVAL, THRESHOLD, workspace)

    def kernel():
        return kernel_launch().tolist()

    result = {"device": torch.cuda.get_device_name(), "vocab": VOCAB, "reps": REPS}
    for name, decide, launch in (("rule", rule, rule_launch), ("kernel", kernel, kernel_launch),
                                 ("rule_again", rule, rule_launch), ("kernel_again", kernel, kernel_launch)):
        for _ in range(WARMUP):
            decide()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(REPS):
            decide()
        wall = (time.perf_counter() - t0) / REPS
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        start.record()
        for _ in range(REPS):
            launch()
        end.record()
        host = (time.perf_counter() - t0) / REPS
        end.synchronize()
        result[name] = {"wall_us": wall * 1e6, "launch_host_us": host * 1e6,
                        "gpu_us_per_call": start.elapsed_time(end) / REPS * 1e3}
    result["decisions"] = {"rule": rule(), "kernel": kernel()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decision_kernel.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
