"""lionfs bridge: the WebSocket bridge and overlay page for apps without ROS (the `bridge` node, standalone)."""
from __future__ import annotations

import argparse
from pathlib import Path

from lionfs_ros.ros_env import keep_discovery_local

HELP = "serve the assistant's topics and the camera over WebSocket (Foxglove protocol) and the overlay page over HTTP"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only; see docs/BRIDGE.md "
                        "before using 0.0.0.0)")
    parser.add_argument("--port", type=int, help="Foxglove WebSocket port (default 8765)")
    parser.add_argument("--http-port", type=int, help="overlay page port (default 8766; 0: no page)")
    parser.add_argument("--camera-rate", type=float, help="most camera frames per second to forward (default 5)")
    parser.add_argument("--image-topic", default="/camera/image_raw", help="camera topic (default /camera/image_raw)")
    parser.add_argument("--namespace", default="", help="namespace of the assistant's topics (default: none)")
    parser.add_argument("--params", type=Path, help="ROS 2 params file (its `bridge` or `/**` section)")


def ros_args(args: argparse.Namespace) -> list[str]:
    """The bridge node's command line: params file first, then the flags given here win."""
    out = ["lionfs-bridge", "--ros-args", "-r", f"image_raw:={args.image_topic}"]
    if args.params:
        out += ["--params-file", str(args.params)]
    if args.namespace:
        out += ["-r", f"__ns:={args.namespace}"]
    for name, value in (("host", args.host), ("port", args.port), ("http_port", args.http_port),
                        ("camera_rate", args.camera_rate)):
        if value is not None:
            out += ["-p", f"{name}:={value}"]
    return out


def run(args: argparse.Namespace) -> int:
    keep_discovery_local()
    from lionfs_ros.nodes.entry_points import bridge

    return bridge(ros_args(args))
