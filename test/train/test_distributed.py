"""`lionfs train` under torchrun and accelerate launch: two CPU processes (gloo) train both stages together."""
import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from lionfs_ros.model import LionFSModel
from lionfs_ros.train.distributed import check_launch

from train_helpers import tiny_config_dict

PROCESSES = 2
STEPS = 4
STAGE1_STEPS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_stage_config(tmp_path, train_dir):
    settings = tiny_config_dict(train_dir, max_steps=STEPS, save_steps=2)
    settings["frame_pretraining"] = {"steps": STAGE1_STEPS, "clips_per_batch": 1, "frames_per_clip": 4,
                                     "holdout_clips": 1, "log_window": 1, "warmup_steps": 0}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(settings))
    return config


def launch(launcher: list[str], config, out):
    command = launcher + ["-m", "lionfs_ros.cli", "train", "--config", str(config), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={PROCESSES}"]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(PROCESSES)]


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_train_both_stages(tmp_path, train_dir, launcher):
    port = free_port()
    command = TORCHRUN + [f"--master_port={port}"] if launcher == "torchrun" else ACCELERATE + ["--main_process_port", str(port)]
    out = tmp_path / "run"
    done = launch(command, two_stage_config(tmp_path, train_dir), out)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == PROCESSES and summary["global_step"] == STEPS
    stage1 = json.loads((out / "frame_pretraining" / "summary.json").read_text())
    # every process trained stage 1 on its own clips (the replicas were checked equal at its end)
    assert stage1["world_size"] == PROCESSES and stage1["clips_per_step"] == PROCESSES and stage1["steps"] == STAGE1_STEPS
    assert len(json.loads((out / "frame_pretraining" / "losses.json").read_text())) == STAGE1_STEPS
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    LionFSModel.from_pretrained(out / "model")


def test_accelerate_starting_one_process_for_several_is_refused():
    """Without GPUs and without --multi_gpu, `accelerate launch --num_processes 2` starts ONE process (its simple
    launcher). The environment that process really gets (printed by `env` in its place) is refused, with the
    way out; the environment of a process of a real group is not."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(PROCESSES), "--no_python",
               "env"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    launched = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    problem = check_launch(launched)
    assert problem is not None and "--multi_gpu" in problem
    assert check_launch({**launched, "WORLD_SIZE": "2", "RANK": "0"}) is None
    assert check_launch({**launched, "OMPI_COMM_WORLD_SIZE": "2"}) is None  # mpirun started the group
    assert check_launch({}) is None
