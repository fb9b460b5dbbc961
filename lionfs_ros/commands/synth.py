"""lionfs synth: generate the synthetic egocentric world (see lionfs_ros/data/synth/README.md)."""
from lionfs_ros.data.synth.cli import add_arguments, run

HELP = "generate synthetic egocentric episodes with narration-stream ground truth (and rosbags)"

__all__ = ["HELP", "add_arguments", "run"]
