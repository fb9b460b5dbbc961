"""Launches for Nsight Compute: the few-rows product on the Llama-3-8B q/k/v and gate/up FP8 shapes, at a decided
frame's 11 rows and a generated token's one row, with the tiles the engine's tuning picked on an H200 (issue 14: why
does the 11-row tensor-core path read the weights slower than the one-row path?).

Each config runs once to compile (``WARMUP`` launches), then once more for the profiler, so
``ncu --launch-skip 4 --launch-count 4 -k regex:_few_rows`` profiles the four launches in ``CASES`` order:

    ncu --clock-control none --launch-skip 4 --launch-count 4 -k regex:_few_rows --section SpeedOfLight \\
        --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section WarpStateStats \\
        --section SchedulerStats --csv --page details python3 scripts/few_rows_ncu_target.py > ncu.csv
"""
from __future__ import annotations

import torch

from lionfs_ros.engine.kernels.few_rows_linear import few_rows_linear
from lionfs_ros.engine.quantization import quantize_fp8

# (name, N, K, rows, config): the tunings of bench-llama3-8b-session12-pdl-h200.json (the +pdl+fp8 variant's)
CASES = (
    ("qkv_11", 6144, 4096, 11, (16, 64, 128, 4, 4, 4, 1)),
    ("qkv_1", 6144, 4096, 1, (1, 8, 1024, 4, 3, 1, 0)),
    ("gate_up_11", 28672, 4096, 11, (16, 64, 128, 4, 4, 4, 1)),
    ("gate_up_1", 28672, 4096, 1, (1, 8, 1024, 2, 3, 1, 0)),
)
WARMUP = len(CASES)


def main() -> None:
    torch.manual_seed(0)
    runs = []
    for name, n, k, rows, config in CASES:
        w = quantize_fp8(torch.randn(n, k, device="cuda") * 0.02)
        x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16)
        runs.append((name, x, w, config))
    for _, x, w, config in runs:  # compile: the first WARMUP launches
        few_rows_linear(x, w.codes, w.scale, config=config)
    torch.cuda.synchronize()
    for name, x, w, config in runs:  # the profiled launches
        few_rows_linear(x, w.codes, w.scale, config=config)
        torch.cuda.synchronize()
        print(name, config, flush=True)


if __name__ == "__main__":
    main()
