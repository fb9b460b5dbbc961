"""The lionfs command lists exactly the subcommands that exist, and each one has help."""
import subprocess
import sys

import pytest

from lionfs_ros.cli import COMMANDS, build_parser, main


def test_help_lists_only_existing_subcommands():
    out = subprocess.run([sys.executable, "-m", "lionfs_ros.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for name in COMMANDS:
        assert name in out
    for later in ("train", "eval", "replay", "bench", "listen", "record"):
        if later not in COMMANDS:
            assert f"    {later} " not in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert "usage: lionfs " + name in capsys.readouterr().out


def test_unknown_subcommand_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["fly"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["bringup", "demo"])
def test_node_set_option_keeps_its_old_spelling(command):
    """`--set` means a node set in bringup/demo and an override in train: `--node-set` says which, `--set` still works."""
    parser = build_parser()
    assert parser.parse_args([command, "--node-set", "monitor"]).node_set == "monitor"
    assert parser.parse_args([command, "--set", "monitor"]).node_set == "monitor"
