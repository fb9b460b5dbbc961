"""lionfs listen: print the assistant's messages and events as an AR app would consume them."""
from __future__ import annotations

import argparse
import time

from lionfs_ros.ros_env import keep_discovery_local

HELP = "print assistant messages (partials update one line) and guidance events"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", default="", help="namespace of the assistant's topics (default: none)")
    parser.add_argument("--no-events", action="store_true", help="show only the assistant's words")
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")


def run(args: argparse.Namespace) -> int:
    keep_discovery_local()
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from lionfs_ros.nodes.listener import Listener

    rclpy.init()
    listener = Listener(show_events=not args.no_events, namespace=args.namespace or None)
    executor = SingleThreadedExecutor()
    executor.add_node(listener)
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while rclpy.ok() and (deadline is None or time.monotonic() < deadline):
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        listener.destroy_node()
        rclpy.try_shutdown()
    return 0
