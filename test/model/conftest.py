"""Fixtures of the model tests: tiny real HF parts saved once per session, models built from them."""
from __future__ import annotations

import pytest
import torch

from lionfs_ros.model import LionFSModel

from tiny_parts import make_config, write_tiny_parts


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    return write_tiny_parts(tmp_path_factory.mktemp("tiny_parts"))


@pytest.fixture
def build(tiny_dirs):
    """``build(seed=0, fused=True, beta=None, attn="sdpa", lora=False)`` -> a fresh tiny LionFSModel in eval mode."""

    def _build(seed: int = 0, **kwargs) -> LionFSModel:
        torch.manual_seed(seed)
        return LionFSModel.from_config(make_config(tiny_dirs, **kwargs)).eval()

    return _build
