"""Console entry points of the node executables (`lionfs_node`, `ros2 run lionfs_ros ...`)."""
from __future__ import annotations

import sys

from lionfs_ros.ros_env import keep_discovery_local

# Threads for nodes whose callbacks wait on each other (action client inside the engine's
# slow path, service calls while frames arrive).
EXECUTOR_THREADS = 4


def check_params_files(executable: str, argv: list[str]) -> None:
    """Check every --params-file of this node's command line as `lionfs bringup` checks a set's,
    before rcl reads it (rcl's own errors are tracebacks, and it ignores what it cannot place)."""
    from dataclasses import fields

    from lionfs_ros.config import NODE_PARAMS, validate_params_file

    name, namespace = executable, ""
    for arg, value in zip(argv, argv[1:]):
        if arg in ("-r", "--remap") and value.startswith("__node:="):
            name = value.split(":=", 1)[1]
        elif arg in ("-r", "--remap") and value.startswith("__ns:="):
            namespace = value.split(":=", 1)[1]
    others = frozenset(spec.name for cls in NODE_PARAMS.values() for spec in fields(cls))
    for arg, value in zip(argv, argv[1:]):
        if arg == "--params-file":
            validate_params_file(value, {name: executable}, namespace, tolerated=others)


def _params_error(executable: str) -> int:
    """2 (after one line on stderr) for a bad params file, else 0; runs before the heavy imports."""
    from lionfs_ros.config import ConfigError

    try:
        check_params_files(executable, sys.argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _spin(node_factory, multi_threaded: bool = False) -> int:
    keep_discovery_local()
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

    from lionfs_ros.config import ConfigError
    from lionfs_ros.model_loading import ModelLoadError

    try:
        rclpy.init(args=sys.argv)
    except Exception as err:  # rcl's argument errors (a bad -p value) come as RCLError with its own text
        print(f"error: bad ROS arguments: {err}", file=sys.stderr)
        return 2
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
    if code := _params_error("stream_monitor"):
        return code
    from lionfs_ros.nodes.stream_monitor import StreamMonitor

    return _spin(StreamMonitor)


def lionfs_node() -> int:
    if code := _params_error("lionfs_node"):
        return code
    from lionfs_ros.nodes.lionfs_node import LionFSNode

    return _spin(LionFSNode, multi_threaded=True)


def slow_thinker_node() -> int:
    if code := _params_error("slow_thinker_node"):
        return code
    from lionfs_ros.nodes.slow_thinker_node import SlowThinkerNode

    return _spin(SlowThinkerNode, multi_threaded=True)
