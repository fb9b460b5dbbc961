"""Programmatic dependent launch (PDL) for the engine's Triton kernels, on Hopper and later GPUs.

A step is ~300 small kernels back to back; between two of them the GPU idles while the next grid launches. With
PDL a kernel is launched as its predecessor drains, and its first instruction (``gdc_wait``, griddepcontrol.wait)
blocks until the predecessor has finished and its writes are visible: the kernel computes exactly what it computed
before, only its launch overlaps the previous kernel's tail. CUDA graphs keep it (a programmatic edge). Measured on
an H200 (``scripts/tower_speed_probe.py --parts pdl``): a chain of small kernels in a graph, 1.19 -> 0.96 us per
kernel; larger ones 1.78 -> 1.36.

Each kernel takes a ``PDL`` constexpr and starts with ``wait_for_previous(PDL)``; its launch passes ``launch_options``.
Off by default: it did not pay in the engine (``lionfs bench --preset llama3-8b``, H200, a variant with it against
one without in the same run: a decided frame 7.24 vs 7.05 ms and 195.8 vs 201.3 tokens/s in one run, 7.00 vs 6.99
ms and 200.2 vs 199.1 in the next). Since the twelfth session each kernel also lets the next one launch right after
its own wait (before, the next launched only as it finished); measured in one run: FP8 weights 5.66 vs 5.50 ms and
326.1 vs 343.2 tokens/s (with PDL first), bf16 6.80 vs 6.99 ms and 208.6 vs 209.7 (with PDL first): still not a
default. ``EngineConfig.dependent_launch`` (``set_dependent_launch``) turns it on.
"""
from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl


_enabled = False


def set_dependent_launch(on: bool) -> None:
    """PDL on or off for the kernels launched (or captured into graphs) from now on in this process
    (``EngineConfig.dependent_launch``; the engine sets it when it is built)."""
    global _enabled
    _enabled = bool(on)


@functools.lru_cache(maxsize=None)
def _capable(device: torch.device) -> bool:
    if device.type != "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        return False
    return (torch.cuda.get_device_capability(device) >= (9, 0) and hasattr(tl.extra.cuda, "gdc_wait")
            and hasattr(tl.extra.cuda, "gdc_launch_dependents"))


def dependent_launch(device: torch.device) -> bool:
    """Whether the engine's kernels on ``device`` launch with PDL: switched on (``set_dependent_launch``), a CUDA GPU of
    compute capability 9.0 or later, a Triton with ``gdc_wait`` and ``gdc_launch_dependents`` (not its interpreter)."""
    return _enabled and _capable(device)


def launch_options(device: torch.device) -> dict:
    """The keyword arguments of a kernel launch on ``device``: its ``PDL`` constexpr, and Triton's ``launch_pdl``."""
    return {"PDL": True, "launch_pdl": True} if dependent_launch(device) else {"PDL": False}


@triton.jit
def wait_for_previous(PDL: tl.constexpr):
    """A kernel's first call: with PDL, wait until the previous kernel in the stream has finished and its writes are
    visible, then let the next kernel launch (griddepcontrol.launch_dependents: its programs start once every program
    of this one has got here, and they too wait before reading anything, so the next kernel's launch overlaps this
    one's work instead of its tail only). A no-op without PDL."""
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
