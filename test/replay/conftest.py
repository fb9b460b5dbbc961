"""Fixtures of the replay tests: a short synthetic bag, a tiny real model, bags written by other tools."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_helpers import write_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """One synthetic episode, 64x64 at 8 fps, two actions (about 10 s), with its mcap bag."""
    from lionfs_ros.data.synth import GeneratorConfig, generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, GeneratorConfig(seed=3, fps=8, width=64, height=64, num_actions=2), 1, write_bags=True)
    return root


@pytest.fixture(scope="session")
def synth_bag(synth_dir) -> Path:
    (bag,) = sorted((synth_dir / "bags").iterdir())
    return bag


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """(model directory, params file): a tiny real LION-FS model and engine settings that fit it."""
    return write_tiny_model(tmp_path_factory.mktemp("tiny_model"))
