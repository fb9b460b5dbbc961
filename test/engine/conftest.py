"""Fixtures of the engine tests: tiny real models, written and loaded once per session."""
from __future__ import annotations

import pytest
import torch

from engine_parts import build_model, write_tiny_parts


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # The CI machine has 2 shared cores; torch's intra-op threads fight over them (10x slower here).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_parts_dir(tmp_path_factory):
    return write_tiny_parts(tmp_path_factory.mktemp("engine_tiny_parts"))


@pytest.fixture(scope="session")
def fused_model(tiny_parts_dir, tmp_path_factory):
    """LION-FS: SigLIP + CLIP ego tower, aggregation router, token dropping (beta 0.5)."""
    return build_model(tiny_parts_dir, tmp_path_factory.mktemp("fused_model"))


@pytest.fixture(scope="session")
def baseline_model(tiny_parts_dir, tmp_path_factory):
    """VideoLLM-online's design: one encoder, no dropping."""
    return build_model(tiny_parts_dir, tmp_path_factory.mktemp("baseline_model"), fused=False, beta=None)
