"""lionfs bringup: start a node set with its params file, like `ros2 launch` for pip installs."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from lionfs_ros.bringup.node_sets import get_node_set
from lionfs_ros.bringup.supervisor import Supervisor
from lionfs_ros.config import ConfigError, validate_params_file
from lionfs_ros.ros_env import keep_discovery_local

HELP = "start a node set (config/node_sets.yaml) with its params file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node-set", "--set", dest="node_set", default="lionfs",
                        help="node set to start (default: lionfs); --set is the older spelling")
    parser.add_argument("--params", type=Path, help="ROS 2 params file (default: the set's own, under config/)")
    parser.add_argument("--namespace", default="", help="ROS namespace for every node")
    parser.add_argument("--log-dir", type=Path, help="where each node's log goes (default: a new temp dir)")
    parser.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    parser.add_argument("--transport", choices=("shm", "default"), default="shm",
                        help="shm (default): config/fastdds_shm.xml for same-host cameras, unless "
                             "FASTDDS_DEFAULT_PROFILES_FILE is set; default: Fast DDS's own transports")


def run(args: argparse.Namespace) -> int:
    keep_discovery_local()
    try:
        node_set = get_node_set(args.node_set)
        params = args.params or node_set.params_file
        validate_params_file(params, node_set.executables, args.namespace)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="lionfs-bringup-"))
    supervisor = Supervisor(node_set, params.resolve(), log_dir, namespace=args.namespace, transport=args.transport)
    return supervisor.run(duration=args.duration)
