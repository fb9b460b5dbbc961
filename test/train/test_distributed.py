"""`lionfs train` runs unchanged under torchrun: two CPU processes (gloo) train one model together."""
import json
import os
import socket
import subprocess
import sys

import yaml

from lionfs_ros.model import LionFSModel

from train_helpers import tiny_config_dict

PROCESSES = 2
STEPS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_processes(tmp_path, train_dir):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(train_dir, max_steps=STEPS, save_steps=2)))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={PROCESSES}",
               f"--master_port={free_port()}", "-m", "lionfs_ros.cli", "train", "--config", str(config), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == PROCESSES and summary["global_step"] == STEPS
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    LionFSModel.from_pretrained(out / "model")
