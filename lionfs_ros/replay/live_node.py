"""The lionfs_node a live replay plays into: started as its own process, like on a robot, or one already running."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lionfs_ros.eval.stats import process_peak_rss_mib
from lionfs_ros.ros_env import local_ros_env

EXECUTABLE = "lionfs_node"
STOP_TIMEOUT_S = 10.0
LOG_TAIL_CHARS = 2000


@dataclass
class NodeLaunch:
    namespace: str  # absolute, e.g. /lionfs_replay_1234
    transport: str  # raw | compressed
    params_file: Path | None
    overrides: dict  # parameter -> value, from the replay's command line


def node_command(launch: NodeLaunch) -> list[str]:
    """The console script when installed, else the module; always with sim time on and our namespace."""
    script = Path(sys.executable).parent / EXECUTABLE
    command = [str(script)] if script.exists() else [sys.executable, "-m", "lionfs_ros.nodes", EXECUTABLE]
    command += ["--ros-args", "-r", f"__ns:={launch.namespace}"]
    if launch.params_file is not None:
        command += ["--params-file", str(launch.params_file)]
    values = {**launch.overrides, "use_sim_time": True, "image_topic": "image_raw",
              "image_transport": launch.transport, "autostart": True}
    for name, value in values.items():
        command += ["-p", f"{name}:={_ros_value(value)}"]
    return command


def _ros_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'" if value == "" or value[0].isdigit() else value  # keep strings strings
    return repr(value)


class NodeProcess:
    """A lionfs_node child process with its own log file; `stop()` ends it and returns its exit code."""

    def __init__(self, launch: NodeLaunch, domain_id: int | None):
        self.launch = launch
        self.log_dir = Path(tempfile.mkdtemp(prefix="lionfs-replay-node-"))
        self.log_path = self.log_dir / "lionfs_node.log"
        self.command = node_command(launch)
        env = local_ros_env(domain_id)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env)
        self.peak_rss_mib: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def sample_memory(self) -> None:
        """Keep the newest VmHWM reading (the kernel's own peak); call it before stop()."""
        value = process_peak_rss_mib(self.process.pid)
        if value is not None:
            self.peak_rss_mib = value

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return ""

    def stop(self) -> int:
        if self.alive():
            self.sample_memory()
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def cleanup(self, keep_log: bool) -> None:
        if not keep_log:
            shutil.rmtree(self.log_dir, ignore_errors=True)


def replay_namespace() -> str:
    return f"/lionfs_replay_{os.getpid()}"
