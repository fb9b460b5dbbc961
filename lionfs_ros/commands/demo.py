"""lionfs demo: the whole loop on this machine, with nothing to download.

A camera source plays a synthetic egocentric episode into the node set of `lionfs bringup`
(started as real processes with the set's params file), a listener prints what an AR app
would show, and the demo exits by itself at the end of the stream with a one-line summary.
ROS traffic is kept on this host and on a domain of its own.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from lionfs_ros.ros_env import keep_discovery_local

HELP = "play a synthetic episode through the node set and print what the assistant says"
# Seconds to wait for the node set to load its model and subscribe to the camera.
DISCOVERY_TIMEOUT_S = 60.0
# Extra wait once both sides see each other: a publisher can see a subscriber before the
# subscriber has matched it, and the first event of the stream must not be lost.
SETTLE_S = 1.0
# A response counts for a true narration from this long before it to this long after it.
MATCH_EARLY_S, MATCH_LATE_S = 1.0, 2.0
# The demo's own DDS domain unless ROS_DOMAIN_ID is set, so it never meets another graph.
DEMO_DOMAIN_ID = 42


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=7, help="synthetic episode seed (default: 7)")
    parser.add_argument("--actions", type=int, default=4, help="actions in the episode (default: 4)")
    parser.add_argument("--fps", type=int, help="camera rate in Hz (default: the synthetic world's)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default: 1)")
    parser.add_argument("--node-set", "--set", dest="node_set", default="lionfs",
                        help="node set to run (default: lionfs); --set is the older spelling")
    parser.add_argument("--log-dir", type=Path, help="node logs (default: a new temp dir)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def run(args: argparse.Namespace) -> int:
    keep_discovery_local(force=True)
    os.environ.setdefault("ROS_DOMAIN_ID", str(DEMO_DOMAIN_ID))
    from lionfs_ros.bringup.supervisor import transport_env

    os.environ.update(transport_env(os.environ, "shm")[0])  # the camera here and the nodes share memory
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    from lionfs_ros.bringup.node_sets import get_node_set
    from lionfs_ros.bringup.supervisor import Supervisor
    from lionfs_ros.commands.demo_episode import demo_episode
    from lionfs_ros.msg import GuidanceEvent
    from lionfs_ros.nodes.camera_source import CameraSource
    from lionfs_ros.nodes.listener import Listener

    node_set = get_node_set(args.node_set)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="lionfs-demo-"))
    out = open(os.devnull, "w") if args.quiet else sys.stdout
    supervisor = Supervisor(node_set, node_set.params_file, log_dir, out=out, echo=False)
    episode = demo_episode(seed=args.seed, actions=args.actions, fps=args.fps)
    rclpy.init()
    executor = MultiThreadedExecutor()
    camera, listener = CameraSource("/camera/image_raw"), Listener(out=out)
    for node in (camera, listener):
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        supervisor.start()
        ready = camera.wait_for_subscribers(DISCOVERY_TIMEOUT_S) and listener.wait_for_publishers(DISCOVERY_TIMEOUT_S)
        if not ready:
            print(f"demo: the node set did not come up within {DISCOVERY_TIMEOUT_S:.0f} s; logs in {log_dir}",
                  file=sys.stderr)
            return 1
        time.sleep(SETTLE_S)
        camera.play(episode.frames(), rate=args.rate, on_frame=_truth_printer(episode, out))
        stall = _wait_for(listener, GuidanceEvent.STREAM_STALLED, timeout=DISCOVERY_TIMEOUT_S)
        started = listener.events_of(GuidanceEvent.STREAM_STARTED)
    finally:
        code = supervisor.stop()
        executor.shutdown()
        rclpy.try_shutdown()
    said = any(m.is_final for m in listener.messages)
    ok = bool(started) and stall is not None and said and code == 0
    print(_summary(ok, args.seed, episode, camera, listener, stall is not None, log_dir))
    return 0 if ok else 1


def _summary(ok: bool, seed: int, episode, camera, listener, stall_seen: bool, log_dir) -> str:
    """One line: what was said, how its timing compares with the episode's truth, how fast it was."""
    from lionfs_ros.eval.matching import MatchWindow, match_triggers
    from lionfs_ros.nodes.camera_input import stamp_seconds

    episode_time = {round(stamp, 6): t for t, stamp in camera.published}
    finals = [m for m in listener.messages if m.is_final]
    said = [episode_time.get(round(stamp_seconds(m.header.stamp), 6)) for m in finals]
    said = [t for t in said if t is not None]
    scores = match_triggers(said, [n.time for n in episode.narrations], MatchWindow(MATCH_EARLY_S, MATCH_LATE_S))
    latency = sorted(m.decision_latency.sec + m.decision_latency.nanosec * 1e-9 for m in finals)
    timing = "-" if scores.time_diff_s is None else f"{scores.time_diff_s:.2f} s"
    p50 = f"{1e3 * latency[len(latency) // 2]:.0f} ms" if latency else "-"
    return (f"demo: {'ok' if ok else 'FAILED'}: episode seed={seed}, {len(camera.published)} frames, "
            f"{len(episode.narrations)} true narrations; {len(finals)} responses, {scores.matched} timed at a "
            f"true narration (-{MATCH_EARLY_S:g}/+{MATCH_LATE_S:g} s; timing only, text not scored), TimeDiff {timing}, decision latency p50 {p50}; "
            f"end of stream detected: {'yes' if stall_seen else 'no'}; logs: {log_dir}")


def _truth_printer(episode, out):
    """Print each ground-truth narration when the episode reaches it, beside the assistant's lines."""
    pending = list(episode.narrations)

    def on_frame(episode_time: float) -> None:
        while pending and pending[0].time <= episode_time:
            narration = pending.pop(0)
            out.write(f"[episode {narration.time:6.2f} s] truth: {narration.text}\n")
            out.flush()
    return on_frame


def _wait_for(listener, event_type: int, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = listener.events_of(event_type)
        if events:
            return events[-1]
        time.sleep(0.05)
    return None
