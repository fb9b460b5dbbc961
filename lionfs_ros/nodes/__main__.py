"""`python -m lionfs_ros.nodes EXECUTABLE [--ros-args ...]`: run a node without its console script."""
import sys

from lionfs_ros.nodes import entry_points

EXECUTABLES = {
    "stream_monitor": entry_points.stream_monitor,
    "lionfs_node": entry_points.lionfs_node,
    "slow_thinker_node": entry_points.slow_thinker_node,
    "bridge": entry_points.bridge,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in EXECUTABLES:
        sys.exit(f"usage: python -m lionfs_ros.nodes {{{','.join(EXECUTABLES)}}} [--ros-args ...]")
    name = sys.argv.pop(1)
    sys.exit(EXECUTABLES[name]())
