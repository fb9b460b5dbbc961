"""lionfs record: record a live session into a rosbag2 (mcap) that `lionfs replay` and ROS 2 tools read."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

HELP = "record a live session (camera, assistant messages, events) into a rosbag2 mcap bag"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", "-o", type=Path, required=True, help="bag directory to create (must not exist)")
    parser.add_argument("--namespace", default="", help="the assistant's namespace (its topics are relative to it)")
    parser.add_argument("--image-topic", help="camera topic, raw and /compressed (default: the one `lionfs bringup` "
                        "subscribes, camera/image_raw in the namespace)")
    parser.add_argument("--topic", action="append", default=[], metavar="TOPIC",
                        help="another topic to record (repeatable)")
    parser.add_argument("--duration", type=float, help="stop by itself after this many seconds (default: until Ctrl-C)")


def run(args: argparse.Namespace) -> int:
    from lionfs_ros.ros_env import keep_discovery_local

    keep_discovery_local()
    if args.out.exists():
        print(f"lionfs record: error: {args.out} already exists; record into a new path", file=sys.stderr)
        return 2
    if args.duration is not None and args.duration <= 0:
        print(f"lionfs record: error: --duration must be > 0, got {args.duration}", file=sys.stderr)
        return 2
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from lionfs_ros.replay.bag_sink import BagSink, BagSinkError
    from lionfs_ros.replay.recorder import SessionRecorder, session_topics

    try:
        sink = BagSink(args.out)
    except BagSinkError as err:
        print(f"lionfs record: error: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    from lionfs_ros.bringup.node_sets import camera_topic

    recorder = SessionRecorder(sink, session_topics(args.image_topic or camera_topic(), args.topic),
                               namespace=args.namespace or None)
    executor = SingleThreadedExecutor()
    executor.add_node(recorder)
    spinner = threading.Thread(target=_spin, args=(executor, ExternalShutdownException), daemon=True)
    spinner.start()
    print(f"lionfs record: recording into {args.out} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    started = time.monotonic()
    stop.wait(timeout=args.duration)
    executor.shutdown()
    spinner.join(timeout=5)
    sink.close()
    recorder.destroy_node()
    rclpy.try_shutdown()
    elapsed = time.monotonic() - started
    counts = ", ".join(f"{topic} {count}" for topic, count in sorted(sink.counts.items())) or "nothing"
    print(f"lionfs record: {sum(sink.counts.values())} messages in {elapsed:.1f} s into {args.out}: {counts}")
    for topic, why in recorder.skipped.items():
        print(f"  not recorded: {topic} ({why})")
    camera = [t for t in recorder.wanted_camera if sink.counts.get(t)]
    if not sink.counts:
        print(f"lionfs record: error: nothing was recorded; looked for {', '.join(sorted(recorder.wanted))} "
              f"(namespace {args.namespace or '/'}, ROS_DOMAIN_ID {os.environ.get('ROS_DOMAIN_ID', '0')})",
              file=sys.stderr)
        return 1
    if not camera:
        print(f"lionfs record: warning: no camera frame on {' or '.join(recorder.wanted_camera)}; "
              "the bag cannot be replayed (use --image-topic)", file=sys.stderr)
        return 1
    return 0


def _spin(executor, shutdown_error) -> None:
    try:
        executor.spin()
    except shutdown_error:
        pass
