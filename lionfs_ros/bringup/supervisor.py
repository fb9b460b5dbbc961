"""A small process supervisor: the pip-install counterpart of `ros2 launch`.

Starts each node of a node set as its own process with `--ros-args --params-file`, prints each
node's output on the console with its name as prefix (like `ros2 launch`) and keeps it in a log
file per node, forwards SIGINT/SIGTERM, and stops everything (exit code 1) as soon as an
*essential* node dies on its own. A non-essential node (the remote slow thinker of the split set)
may die: it is reported and the others carry on (lionfs_node reports DEGRADED_MODE).

Same-host transport: unless the environment names a Fast DDS profiles file already, the nodes
get config/fastdds_shm.xml (a large shared-memory segment), so big raw images from a camera
started with the same profile arrive over shared memory instead of lossy fragmented UDP.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lionfs_ros.bringup.node_sets import NodeSet, NodeSpec, config_dir

# Seconds a node gets to exit after SIGINT, then after SIGTERM, before SIGKILL.
STOP_GRACE_S = 5.0
POLL_PERIOD_S = 0.1
LOG_TAIL_LINES = 20
SHM_PROFILE = "fastdds_shm.xml"
PROFILE_ENV_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


@dataclass
class RunningNode:
    spec: NodeSpec
    process: subprocess.Popen
    log_path: Path
    reader: threading.Thread | None = None
    died: bool = field(default=False)  # exited on its own (reported once)


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


def transport_env(env: dict, transport: str) -> tuple[dict, str]:
    """(environment for the nodes, one line saying which transport they use)."""
    env = dict(env)
    env.setdefault("PYTHONUNBUFFERED", "1")  # node output reaches the console as it is written
    given = next((env[var] for var in PROFILE_ENV_VARS if env.get(var)), None)
    if given:
        return env, f"Fast DDS profiles from the environment: {given}"
    if transport != "shm":
        return env, "default Fast DDS transports (large best-effort images over UDP lose frames)"
    profile = str(config_dir() / SHM_PROFILE)
    for var in PROFILE_ENV_VARS:  # Fast DDS 3 reads the first, older releases the second
        env[var] = profile
    return env, (f"same-host cameras over shared memory: FASTDDS_DEFAULT_PROFILES_FILE={profile} "
                 "(start the camera driver with the same variable)")


class Supervisor:
    def __init__(self, node_set: NodeSet, params_file: Path, log_dir: Path, env: dict | None = None,
                 namespace: str = "", out=sys.stdout, echo: bool = True, transport: str = "shm"):
        self.node_set = node_set
        self.params_file = params_file
        self.log_dir = log_dir
        self.env, self.transport_note = transport_env(os.environ if env is None else env, transport)
        self.namespace = namespace
        self.out = out
        self.echo = echo  # node output on the console too (demo: logs only)
        self.nodes: list[RunningNode] = []
        self._stop_requested = False
        self._out_lock = threading.Lock()

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._say(self.transport_note)
        for spec in self.node_set.nodes:
            log_path = self.log_dir / f"{spec.name}.log"
            command = node_command(spec, self.params_file, self.namespace)
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
            node = RunningNode(spec, process, log_path)
            node.reader = threading.Thread(target=self._pump, args=(node,), name=f"log-{spec.name}", daemon=True)
            node.reader.start()
            self.nodes.append(node)
            self._say(f"started {spec.name} (pid {process.pid}): {' '.join(command)}")
            self._say(f"  log: {log_path}")

    def request_stop(self, signum=None, frame=None) -> None:
        self._stop_requested = True

    def run(self, duration: float | None = None) -> int:
        """Start the set and supervise it until a signal, `duration` seconds, or an essential node dies."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            deadline = None if duration is None else time.monotonic() + duration
            while not self._stop_requested and (deadline is None or time.monotonic() < deadline):
                dead = [n for n in self.nodes if not n.died and n.process.poll() is not None]
                for node in dead:
                    node.died = True
                    self._report_death(node)
                if any(n.spec.essential for n in dead):
                    self.stop()
                    return 1
                time.sleep(POLL_PERIOD_S)
            return self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> int:
        """SIGINT every live node, escalate after a grace period; 0 if every essential node exited cleanly."""
        clean = True
        for node in self.nodes:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGINT)
        for node in self.nodes:
            code = self._wait(node)
            if node.reader is not None:
                node.reader.join(timeout=STOP_GRACE_S)
            if code not in (0, -signal.SIGINT, 128 + signal.SIGINT) and (node.spec.essential or not node.died):
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

    def _pump(self, node: RunningNode) -> None:
        """Copy the node's output into its log file and, prefixed with its name, onto the console."""
        prefix = f"[{node.spec.name}] "
        with open(node.log_path, "wb") as log:
            for line in iter(node.process.stdout.readline, b""):
                log.write(line)
                log.flush()
                if self.echo:
                    self._write(prefix + line.decode(errors="replace").rstrip("\n") + "\n")
        node.process.stdout.close()

    def _report_death(self, node: RunningNode) -> None:
        if node.reader is not None:
            node.reader.join(timeout=STOP_GRACE_S)  # the last lines are in the log
        what = "stopping the set" if node.spec.essential else "it is not essential: the others carry on"
        self._say(f"error: node {node.spec.name} exited on its own with code {node.process.returncode}; "
                  f"{what}; last lines of {node.log_path}:")
        lines = node.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        for line in lines:
            self._say(f"  | {line}")

    def _say(self, text: str) -> None:
        self._write(f"[bringup] {text}\n")

    def _write(self, text: str) -> None:
        with self._out_lock:
            self.out.write(text)
            self.out.flush()
