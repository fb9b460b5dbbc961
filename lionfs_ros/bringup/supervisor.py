"""A small process supervisor: the pip-install counterpart of `ros2 launch`.

Starts each node of a node set as its own process with `--ros-args --params-file`, writes each
node's output to its own log file, forwards SIGINT/SIGTERM, and stops everything (exit code 1)
as soon as one node dies on its own.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lionfs_ros.bringup.node_sets import NodeSet, NodeSpec

# Seconds a node gets to exit after SIGINT, then after SIGTERM, before SIGKILL.
STOP_GRACE_S = 5.0
POLL_PERIOD_S = 0.1
LOG_TAIL_LINES = 20


@dataclass
class RunningNode:
    spec: NodeSpec
    process: subprocess.Popen
    log_path: Path


def node_command(spec: NodeSpec, params_file: Path, namespace: str = "") -> list[str]:
    """The node's console script next to this interpreter, else `python -m lionfs_ros.nodes`."""
    script = Path(sys.executable).with_name(spec.executable)
    if script.is_file():
        base = [str(script)]
    elif shutil.which(spec.executable):
        base = [shutil.which(spec.executable)]
    else:
        base = [sys.executable, "-m", "lionfs_ros.nodes", spec.executable]
    return base + spec.ros_args(params_file, namespace)


class Supervisor:
    def __init__(self, node_set: NodeSet, params_file: Path, log_dir: Path, env: dict | None = None,
                 namespace: str = "", out=sys.stdout):
        self.node_set = node_set
        self.params_file = params_file
        self.log_dir = log_dir
        self.env = dict(os.environ if env is None else env)
        self.namespace = namespace
        self.out = out
        self.nodes: list[RunningNode] = []
        self._stop_requested = False

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.node_set.nodes:
            log_path = self.log_dir / f"{spec.name}.log"
            command = node_command(spec, self.params_file, self.namespace)
            with open(log_path, "wb") as log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=self.env, start_new_session=True)
            self.nodes.append(RunningNode(spec, process, log_path))
            self._say(f"started {spec.name} (pid {process.pid}): {' '.join(command)}")
            self._say(f"  log: {log_path}")

    def request_stop(self, signum=None, frame=None) -> None:
        self._stop_requested = True

    def run(self, duration: float | None = None) -> int:
        """Start the set and supervise it until a signal, `duration` seconds, or a node dies."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            deadline = None if duration is None else time.monotonic() + duration
            while not self._stop_requested and (deadline is None or time.monotonic() < deadline):
                dead = [n for n in self.nodes if n.process.poll() is not None]
                if dead:
                    for node in dead:
                        self._report_death(node)
                    self.stop()
                    return 1
                time.sleep(POLL_PERIOD_S)
            return self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> int:
        """SIGINT every live node, escalate after a grace period; 0 if all exited cleanly."""
        clean = True
        for node in self.nodes:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGINT)
        for node in self.nodes:
            code = self._wait(node)
            if code not in (0, -signal.SIGINT, 128 + signal.SIGINT):
                clean = False
            self._say(f"stopped {node.spec.name} (exit {code})")
        return 0 if clean else 1

    def _wait(self, node: RunningNode) -> int:
        for escalate in (None, signal.SIGTERM, signal.SIGKILL):
            if escalate is not None and node.process.poll() is None:
                self._say(f"{node.spec.name} did not stop, sending {escalate.name}")
                node.process.send_signal(escalate)
            try:
                return node.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                continue
        return node.process.wait()

    def _report_death(self, node: RunningNode) -> None:
        self._say(f"error: node {node.spec.name} exited on its own with code {node.process.returncode}; "
                  f"last lines of {node.log_path}:")
        lines = node.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        for line in lines:
            self._say(f"  | {line}")

    def _say(self, text: str) -> None:
        print(f"[bringup] {text}", file=self.out, flush=True)
