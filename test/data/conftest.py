"""Fixtures for the synthetic-world tests: tiny frames and short episodes keep the suite fast."""
from __future__ import annotations

import pytest

from lionfs_ros.data.synth import GeneratorConfig, load_catalogue

TINY_SIZE = 64
TINY_FPS = 8
TINY_ACTIONS = 4


@pytest.fixture(scope="session")
def catalogue():
    return load_catalogue()


@pytest.fixture
def tiny_config(catalogue):
    """A config whose episodes render in a fraction of a second."""
    def make(seed: int = 0, **overrides) -> GeneratorConfig:
        settings = {"seed": seed, "fps": TINY_FPS, "width": TINY_SIZE, "height": TINY_SIZE, "num_actions": TINY_ACTIONS,
                        "catalogue": catalogue}
        settings.update(overrides)
        return GeneratorConfig(**settings)
    return make
