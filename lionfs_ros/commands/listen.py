"""lionfs listen: print the assistant's messages and events as an AR app would consume them."""
from __future__ import annotations

import argparse
import os
import sys
import time

from lionfs_ros.ros_env import keep_discovery_local

HELP = "print assistant messages (partials update one line) and guidance events"
# Seconds without any publisher before saying so (a wrong namespace or domain is the usual cause).
NO_PUBLISHER_HINT_S = 5.0


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
    started = time.monotonic()
    deadline = None if args.duration is None else started + args.duration
    print(f"lionfs listen: listening on {listener.topics()} (ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')}; "
          "Ctrl-C to stop)", file=sys.stderr, flush=True)
    hinted = False
    try:
        while rclpy.ok() and (deadline is None or time.monotonic() < deadline):
            executor.spin_once(timeout_sec=0.1)
            if not hinted and time.monotonic() - started > NO_PUBLISHER_HINT_S and not listener.has_publishers():
                hinted = True
                print(f"lionfs listen: nothing publishes on {listener.topics()} yet: is the node set running, in "
                      "this namespace and domain?", file=sys.stderr, flush=True)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        listener.destroy_node()
        rclpy.try_shutdown()
    return 0
