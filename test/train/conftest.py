"""Fixtures of the training tests: tiny episodes and one tiny model trained once per session."""
from __future__ import annotations

import pytest

from lionfs_ros.train.run import run_training

from train_helpers import tiny_config, write_episodes

TRAIN_SEED, VAL_SEED = 11, 911
TRAINED_STEPS = 40


@pytest.fixture(scope="session")
def train_dir(tmp_path_factory):
    return write_episodes(tmp_path_factory.mktemp("synth") / "train", episodes=3, seed=TRAIN_SEED)


@pytest.fixture(scope="session")
def val_dir(tmp_path_factory):
    return write_episodes(tmp_path_factory.mktemp("synth") / "val", episodes=2, seed=VAL_SEED, split="val")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, train_dir):
    """A tiny model trained for a few dozen steps: ``(run directory, summary of the training log)``."""
    out = tmp_path_factory.mktemp("run")
    run_training(tiny_config(train_dir, max_steps=TRAINED_STEPS), out)
    return out
