"""Console entry points of the node executables (`stream_monitor`, `ros2 run lionfs_ros ...`)."""
from __future__ import annotations

import sys

from lionfs_ros.ros_env import keep_discovery_local


def _spin(node_factory) -> int:
    keep_discovery_local()
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from lionfs_ros.config import ConfigError

    rclpy.init(args=sys.argv)
    try:
        node = node_factory()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def stream_monitor() -> int:
    from lionfs_ros.nodes.stream_monitor import StreamMonitor

    return _spin(StreamMonitor)
