"""Live mode: play the bag into a running lionfs_node over ROS 2 and record what it actually publishes.

The player publishes each frame at its recorded time (scaled by --rate), exactly as recorded
(original encoding or compression, header stamps kept), and /clock on the frames' clock so the
node runs with use_sim_time as on a bag replay. The bag's questions (`replay.questions`) go to the node's
`query` topic, each just before the first frame at or after its stamp. The capture side listens to the node's
`assistant`, `guidance` and /diagnostics. Latency is measured on one monotonic clock in this
process: from publishing the triggering frame to receiving the node's message about it (the
node stamps messages with the triggering frame's header), so it includes both transports, the
node's queueing and its drops, as a robot would see them.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Iterator

from lionfs_ros.replay.bag_frames import STAMP_SOURCE_LOG, BagFrame
from lionfs_ros.replay.bag_reader import NS_PER_S
from lionfs_ros.replay.live_node import NodeLaunch, NodeProcess, replay_namespace
from lionfs_ros.replay.records import RunOutput
from lionfs_ros.replay.replay_params import command_line_overrides, node_params
from lionfs_ros.replay.runners import RunnerFailed
from lionfs_ros.ros_env import keep_discovery_local

QUIET_S = 1.0  # after the last frame: done when no answer is open and nothing arrived for this long
POLL_S = 0.02
STAMP_SLACK_S = 1e-6  # a question stamped at a frame's time goes out just before that frame (stamps' float round trip)
MEMORY_SAMPLE_FRAMES = 30  # VmHWM is the kernel's running peak; read it now and then in case the node dies
# Own node, no ROS_DOMAIN_ID set: keep the replay's /clock off domain 0, where a robot may run.
DEFAULT_REPLAY_DOMAIN = 43


@dataclass
class LiveOptions:
    startup_timeout_s: float = 120.0
    drain_s: float = 30.0
    attach_namespace: str | None = None


def _wait_for(condition, timeout_s: float) -> bool:
    """Poll ``condition`` every ``POLL_S`` until it holds (True) or ``timeout_s`` has passed (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


class LiveRunner:
    mode = "live"

    def __init__(self, settings):
        self.settings = settings
        self.options = LiveOptions(**settings.live)
        self.params = node_params(settings)  # checks the params file and overrides before anything starts
        self.node: NodeProcess | None = None
        self.ros = None

    def stream_metrics(self, truth, frame_stats) -> dict | None:
        return None  # teacher forcing needs the model in this process: deterministic mode

    def prepare(self, image_msgtype: str, has_truth: bool) -> None:
        keep_discovery_local()
        from lionfs_ros.replay.live_graph import ReplayGraph

        attach = self.options.attach_namespace
        domain = None
        if attach is None and "ROS_DOMAIN_ID" not in os.environ:
            domain = DEFAULT_REPLAY_DOMAIN
        namespace = ("/" + attach.strip("/")) if attach else replay_namespace()
        transport = "compressed" if image_msgtype.endswith("CompressedImage") else "raw"
        if attach is None:
            launch = NodeLaunch(namespace, transport, self.settings.params_file, command_line_overrides(self.settings))
            self.node = NodeProcess(launch, domain)
        # An attached node was started by `lionfs bringup`: its camera is the node set's remapped topic.
        from lionfs_ros.bringup.node_sets import camera_topic

        self.ros = ReplayGraph(namespace, transport, domain, camera_topic() if attach else "image_raw")
        deadline = time.monotonic() + self.options.startup_timeout_s
        while not self.ros.connected():
            if self.node is not None and not self.node.alive():
                self._abort(f"lionfs_node exited with code {self.node.process.returncode} while starting")
            if time.monotonic() > deadline:
                self._abort(f"lionfs_node in {namespace} did not subscribe to the camera and publish its answers "
                            f"within {self.options.startup_timeout_s:.0f} s")
            time.sleep(POLL_S * 5)

    def _abort(self, message: str) -> None:
        tail = self.node.log_tail() if self.node is not None else ""
        self.close(keep_log=True)
        where = f"\n--- node log ({self.node.log_path}) ---\n{tail}" if self.node is not None else ""
        raise RunnerFailed(message + where)

    def run(self, frames: Iterator[BagFrame], log, bag, questions=()) -> RunOutput:
        output = RunOutput(mode=self.mode, model=self.params.model_path or "bundled demo model")
        ros = self.ros
        pending = sorted(questions, key=lambda q: q.stamp_s)  # each published just before the first frame at its time
        if pending and not _wait_for(ros.asks_reach_the_node, self.options.startup_timeout_s):
            output.notes.append(f"nothing subscribes to {ros.query_pub.topic_name}: the bag's {len(pending)} "
                                f"question(s) were not asked")
            pending = []
        sent: dict[int, float] = {}  # stamp (ns) -> monotonic time it was published
        started = time.monotonic()
        try:
            for frame in frames:
                if output.frames.fed == 0:
                    ros.start_clock(frame.stamp_s, self.settings.rate)
                ros.wait_until_due(frame.stamp_s)
                while pending and pending[0].stamp_s <= frame.stamp_s + STAMP_SLACK_S:
                    ros.publish_question(pending.pop(0))
                restamp = log.stats.stamp_source == STAMP_SOURCE_LOG
                sent[round(frame.stamp_s * NS_PER_S)] = ros.publish_frame(frame, restamp)
                output.frames.fed += 1
                if self.node is not None and output.frames.fed % MEMORY_SAMPLE_FRAMES == 0:
                    self.node.sample_memory()
            self._drain(ros)
        finally:
            output.wall_time_s = time.monotonic() - started
            if self.node is not None:
                self.node.sample_memory()
            self.close(keep_log=False)
        self._collect(output, ros, sent, log)
        if output.frames.fed and output.frames.received == 0:
            raise RunnerFailed(f"lionfs_node received none of the {output.frames.fed} frames sent to "
                               f"{ros.image_pub.topic_name}: wrong namespace, topic or transport?")
        return output

    def _drain(self, ros) -> None:
        """Let answers still being written arrive, then one more /diagnostics with the final counts."""
        deadline = time.monotonic() + self.options.drain_s
        last_frame_at = time.monotonic()
        while time.monotonic() < deadline:
            quiet = time.monotonic() - max(ros.last_arrival(), last_frame_at)
            if ros.assembler.open_turns == 0 and quiet >= QUIET_S and ros.diagnostics_since(last_frame_at):
                return
            time.sleep(POLL_S)

    def _collect(self, output: RunOutput, ros, sent: dict[int, float], log) -> None:
        def sent_at(stamp_s: float) -> float | None:
            key = round(stamp_s * NS_PER_S)
            return next((sent[k] for k in (key, key - 1, key + 1) if k in sent), None)

        output.responses = ros.assembler.records(log.index_of, log.video_time, sent_at)
        output.frame_decision_latencies_s = []
        diagnostics = ros.last_diagnostics()
        output.assistant_stats = diagnostics
        received = _int(diagnostics.get("frames_received"))
        output.frames.received = received
        output.frames.processed = _int(diagnostics.get("decided"))
        output.frames.dropped_transport = output.frames.fed - received if received is not None else None
        output.frames.dropped_engine = ros.frames_dropped_events() if ros.saw_guidance() else _int(diagnostics.get("dropped"))
        if not diagnostics:
            output.notes.append("no /diagnostics from the node: frame counts on its side are unknown")
        if self.node is not None:
            output.memory.rss_mib = self.node.peak_rss_mib
            output.memory.process = f"lionfs_node (pid {self.node.pid})"
        else:
            output.memory.process = "attached lionfs_node (peak RSS not readable from here)"
        gpu = [_float(d.get("gpu_memory_mib")) for d in ros.all_diagnostics()]
        gpu = [g for g in gpu if g]
        output.memory.gpu_mib = max(gpu) if gpu else None
        output.notes += ros.notes

    def close(self, keep_log: bool) -> None:
        if self.ros is not None:
            self.ros.stop_clock()
        if self.node is not None:
            code = self.node.stop()
            if code not in (0, None) and not keep_log:
                keep_log = True
                self.ros.notes.append(f"lionfs_node exited with code {code}; its log: {self.node.log_path}")
            self.node.cleanup(keep_log)
        if self.ros is not None:
            self.ros.shutdown()


def _int(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
