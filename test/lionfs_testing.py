"""Helpers shared by the ROS tests (imported as `lionfs_testing`; conftest.py holds the fixtures)."""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# Domain ids 1..100 are valid with the default port mapping; offset by pid so two pytest
# runs on one machine are unlikely to meet.
_DOMAINS = itertools.count(1 + os.getpid() % 50)


def next_domain() -> int:
    return next(_DOMAINS) % 100 + 1


class Processes:
    """Child processes of one test, with logs; all of them are stopped at teardown."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, args: list[str], name: str, **kwargs) -> subprocess.Popen:
        log = self.tmp_path / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=REPO, env=kwargs.pop("env", dict(os.environ)), **kwargs)
        self.procs.append((proc, log))
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        for p, log in self.procs:
            if p is proc:
                return log.read_bytes().decode(errors="replace")
        raise KeyError(proc)

    def stop_all(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(predicate, timeout: float, period: float = 0.05):
    """Poll `predicate` until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    return predicate()


def build_tiny_model(root: Path) -> Path:
    """A tiny LION-FS model saved to `root` (the engine tests' calibrated one: it speaks sometimes)."""
    sys.path.insert(0, str(REPO / "test" / "engine"))
    from engine_parts import build_model, write_tiny_parts

    build_model(write_tiny_parts(root / "parts"), root / "model")
    return root / "model"


# ROS parameters that fit the tiny model (1,024 positions) and keep answers short.
TINY_NODE_PARAMS = ["-p", "kv_budget_tokens:=800", "-p", "max_new_tokens:=4"]


def node_command(executable: str, *ros_args: str) -> list[str]:
    """A node executable from the venv (or `python -m lionfs_ros.nodes`), with --ros-args."""
    exe = VENV_BIN / executable
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "lionfs_ros.nodes", executable]
    return base + ["--ros-args", *ros_args]
