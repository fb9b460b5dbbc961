"""`lionfs synth` arguments and run()."""
from __future__ import annotations

import argparse

import pytest

from lionfs_ros.data.synth import iter_dataset, read_manifest
from lionfs_ros.data.synth.cli import add_arguments, parse_size, run


def _parser():
    parser = argparse.ArgumentParser(prog="lionfs synth")
    add_arguments(parser)
    return parser


def test_run_writes_a_tiny_dataset(tmp_path, capsys):
    out = tmp_path / "tiny"
    args = _parser().parse_args(["--out", str(out), "--episodes", "2", "--seed", "5", "--fps", "4",
                                 "--size", "48x40", "--actions", "2"])
    assert run(args) == 0
    printed = capsys.readouterr().out
    assert "wrote 2 train episodes" in printed and "48x40" in printed and "narrations:" in printed
    manifest = read_manifest(out)
    assert (manifest["fps"], manifest["width"], manifest["height"]) == (4, 48, 40)
    episodes = list(iter_dataset(out))
    assert len(episodes) == 2
    assert all(e.frames.shape[1:] == (40, 48, 3) and len(e.actions) == 2 for e in episodes)


def test_run_heldout_defaults_to_val(tmp_path, capsys):
    args = _parser().parse_args(["--out", str(tmp_path / "h"), "--episodes", "1", "--heldout", "--size", "48x48",
                                 "--actions", "2"])
    assert run(args) == 0
    manifest = read_manifest(tmp_path / "h")
    assert manifest["split"] == "val" and manifest["heldout"] is True
    assert manifest["episodes"][0]["episode_id"] == "heldout_000000"
    assert manifest["episodes"][0]["heldout_combinations"]


@pytest.mark.parametrize("argv, message", [
    (["--size", "0x10"], "positive width and height"),
    (["--size", "big"], "WIDTHxHEIGHT"),
    (["--split", "test"], "invalid choice"),
    (["--episodes", "0"], "positive integer"),
    (["--seed", "-1"], "non-negative"),
])
def test_bad_arguments_are_rejected_by_the_parser(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["--out", str(tmp_path / "x"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--size", "16x16"], "at least 32 pixels"),
    (["--split", "train", "--heldout"], "never go into the train split"),
    (["--fps", "500"], "fps must be an integer from 1 to"),
])
def test_bad_settings_give_a_clear_error(tmp_path, capsys, argv, message):
    args = _parser().parse_args(["--out", str(tmp_path / "x"), *argv])
    assert run(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("lionfs synth: error:") and message in err
    assert not (tmp_path / "x").exists()


def test_run_validates_a_namespace_built_by_hand(tmp_path, capsys):
    """The top-level CLI may build args itself; run() still refuses bad values."""
    args = argparse.Namespace(out=tmp_path / "x", episodes=1, seed=0, fps=None, size="0x10", bag=False,
                              split="nope", heldout=False, actions=None, catalogue=None)
    assert run(args) == 2
    assert "size" in capsys.readouterr().err
    args.size, args.split = None, "nope"
    assert run(args) == 2
    assert "split must be one of" in capsys.readouterr().err


def test_run_refuses_a_non_empty_output(tmp_path, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    args = _parser().parse_args(["--out", str(tmp_path / "used"), "--episodes", "1", "--size", "48x48"])
    assert run(args) == 2
    assert "not empty" in capsys.readouterr().err


def test_parse_size():
    assert parse_size("128x96") == (128, 96)
    assert parse_size("64X64") == (64, 64)
