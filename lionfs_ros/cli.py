"""The `lionfs` command: one entry point, one module per subcommand in lionfs_ros.commands."""
from __future__ import annotations

import argparse
import importlib
import sys

from lionfs_ros import __version__

# Subcommand -> module in lionfs_ros.commands. Only commands that exist are listed.
COMMANDS = {
    "demo": "demo",
    "bringup": "bringup",
    "synth": "synth",
    "train": "train",
    "eval": "eval",
    "listen": "listen",
    "bridge": "bridge",
    "replay": "replay",
    "record": "record",
    "bench": "bench",
    "convert": "convert",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lionfs", description="LION-FS fast & slow online video assistant for ROS 2.")
    parser.add_argument("--version", action="version", version=f"lionfs_ros {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"lionfs_ros.commands.{module_name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
