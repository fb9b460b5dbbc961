"""Console entry points of the node executables (`lionfs_node`, `ros2 run lionfs_ros ...`)."""
from __future__ import annotations

import sys

from lionfs_ros.ros_env import keep_discovery_local

# Threads for nodes whose callbacks wait on each other (action client inside the engine's
# slow path, service calls while frames arrive).
EXECUTOR_THREADS = 4


def _spin(node_factory, multi_threaded: bool = False, args: list[str] | None = None) -> int:
    keep_discovery_local()
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

    from lionfs_ros.config import ConfigError
    from lionfs_ros.model_loading import ModelLoadError

    rclpy.init(args=sys.argv if args is None else args)
    try:
        node = node_factory()
    except (ConfigError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS) if multi_threaded else SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 1 if getattr(node, "startup_failed", False) else 0


def stream_monitor() -> int:
    from lionfs_ros.nodes.stream_monitor import StreamMonitor

    return _spin(StreamMonitor)


def lionfs_node() -> int:
    from lionfs_ros.nodes.lionfs_node import LionFSNode

    return _spin(LionFSNode, multi_threaded=True)


def slow_thinker_node() -> int:
    from lionfs_ros.nodes.slow_thinker_node import SlowThinkerNode

    return _spin(SlowThinkerNode, multi_threaded=True)


def bridge(args: list[str] | None = None) -> int:
    from lionfs_ros.nodes.bridge_node import BridgeNode

    return _spin(BridgeNode, args=args)
