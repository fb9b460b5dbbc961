"""Data-parallel training at a fixed global batch: one GPU against N GPUs under torchrun and accelerate.

Runs ``lionfs train`` on the same config once per launcher, dividing the global batch of both stages
(``frame_pretraining.clips_per_batch`` and ``training.per_device_train_batch_size`` of the config, taken
as the global batch) by the number of processes, and writes one JSON: every step's loss of both stages
per run, throughput (stage 1 clips/s, stage 2 samples/s), runtime and the speedup over one process.

    PYTHONPATH=. python3 docs/benchmarks/train_scaling.py --config config/train/scaling.yaml \\
        --work /tmp/scaling --out train-scaling.json --processes 2

The first run generates the data and the pixel cache (shared by all runs; outside the timed part).
Keeps NVLink multicast off in every child (NCCL_NVLS_ENABLE=0 and friends) unless already set.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
WINDOW = 25  # steps per averaged window in the printed table


def launcher(kind: str, processes: int, port: int) -> list[str]:
    if kind == "single":
        return [sys.executable, "-m", "lionfs_ros.cli"]
    if kind == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                f"--master_port={port}", "-m", "lionfs_ros.cli"]
    if kind == "accelerate":
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                "--main_process_port", str(port), "-m", "lionfs_ros.cli"]
    raise ValueError(kind)


def window_means(values: list[float], window: int = WINDOW) -> list[float]:
    return [round(sum(values[i:i + window]) / len(values[i:i + window]), 4) for i in range(0, len(values), window)]


def collect(out: Path) -> dict:
    summary = json.loads((out / "train_summary.json").read_text())
    log = json.loads((out / "train_log.json").read_text())
    stage2 = [entry["loss"] for entry in log if "loss" in entry and "step" in entry]
    result = {"world_size": summary["world_size"], "cuda_device": summary["cuda_device"],
              "stage2": {"steps": summary["global_step"], "runtime_s": summary["train_runtime_s"],
                         "samples_per_s": summary["train_samples_per_second"], "loss": stage2}}
    stage1_dir = out / "frame_pretraining"
    if (stage1_dir / "summary.json").is_file():
        stage1 = json.loads((stage1_dir / "summary.json").read_text())
        losses = json.loads((stage1_dir / "losses.json").read_text())
        result["stage1"] = {"steps": stage1["steps"], "runtime_s": stage1["runtime_s"],
                            "clips_per_s": round(stage1["steps"] * stage1["clips_per_step"] / stage1["runtime_s"], 1),
                            "world_size": stage1["world_size"], "held_out_after": stage1["held_out_after"],
                            "loss": losses}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="run directories go here")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--launchers", default="single,torchrun,accelerate")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per run")
    parser.add_argument("--deadline", type=float, default=3600.0, help="seconds for all runs together")
    parser.add_argument("--min-run", type=float, default=60.0, help="skip a run when fewer seconds are left")
    parser.add_argument("--log-dir", type=Path, default=None, help="run logs (default: --work)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    from lionfs_ros.train.config import TrainConfig

    deadline = time.monotonic() + args.deadline
    args.work.mkdir(parents=True, exist_ok=True)
    args.log_dir = args.log_dir or args.work
    config = TrainConfig.load(args.config, args.overrides)
    batch2 = config.training.per_device_train_batch_size
    batch1 = config.frame_pretraining.clips_per_batch if config.frame_pretraining else None
    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in NO_MULTICAST.items()}}
    report = {"config": str(args.config), "overrides": args.overrides, "global_batch": {"stage1": batch1, "stage2": batch2},
              "runs": {}}
    for index, kind in enumerate(args.launchers.split(",")):
        processes = 1 if kind == "single" else args.processes
        if batch2 % processes or (batch1 is not None and batch1 % processes):
            raise SystemExit(f"the global batches ({batch1}, {batch2}) do not divide over {processes} processes")
        sets = args.overrides + [f"training.per_device_train_batch_size={batch2 // processes}"]
        if batch1 is not None:
            sets.append(f"frame_pretraining.clips_per_batch={batch1 // processes}")
        out = args.work / f"{kind}_{processes}"
        command = launcher(kind, processes, 29500 + index) + ["train", "--config", str(args.config), "--out", str(out)]
        for item in sets:
            command += ["--set", item]
        run_env = dict(env)
        if kind == "single":
            run_env["CUDA_VISIBLE_DEVICES"] = run_env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
        left = deadline - time.monotonic()
        if left < args.min_run:
            print(f"skipping {kind}: {left:.0f} s left", flush=True)
            report["runs"][kind] = {"skipped": f"{left:.0f} s left before the deadline"}
            continue
        print("$", " ".join(command), flush=True)
        started = time.monotonic()
        log = args.log_dir / f"{kind}_{processes}.log"
        with open(log, "w") as sink:  # streamed, so a run cut short still leaves its log
            child = subprocess.Popen(command, env=run_env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = child.wait(timeout=min(args.timeout, left))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)  # the launcher and every process it started
                child.wait()
                code = "timeout"
        wall = round(time.monotonic() - started, 1)
        print(f"{kind}: exit {code} after {wall} s", flush=True)
        if code != 0:
            report["runs"][kind] = {"returncode": code, "wall_s": wall}
        else:
            report["runs"][kind] = {"processes": processes, "wall_s": wall, **collect(out)}
        args.out.write_text(json.dumps(report) + "\n")  # what is done so far survives a later failure
    base = report["runs"].get("single", {})
    for kind, run in report["runs"].items():
        for stage, rate in (("stage1", "clips_per_s"), ("stage2", "samples_per_s")):
            if stage in run and stage in base:
                run[stage]["speedup"] = round(run[stage][rate] / base[stage][rate], 2)
                run[stage]["loss_windows"] = window_means(run[stage]["loss"])
                print(kind, stage, rate, run[stage][rate], "speedup", run[stage]["speedup"],
                      "loss per", WINDOW, "steps", run[stage]["loss_windows"], flush=True)
    args.out.write_text(json.dumps(report) + "\n")
    return 0 if all("world_size" in run for run in report["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
