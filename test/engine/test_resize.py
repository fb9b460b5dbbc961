"""The GPU-able resize equals Pillow's bit for bit (the model's pixels must not change)."""
import numpy as np
import pytest
import torch
from PIL import Image

from lionfs_ros.engine.resize import ExactResize

CASES = [((480, 640), (384, 384)), ((240, 320), (64, 64)), ((17, 23), (32, 32)), ((384, 384), (384, 384)),
         ((1, 5), (8, 8)), ((333, 97), (50, 120)), ((71, 19), (46, 7)), ((80, 115), (24, 47))]


@pytest.mark.parametrize("resample", ["bicubic", "bilinear"])
@pytest.mark.parametrize("src, dst", CASES)
def test_equals_pillow(src, dst, resample):
    rng = np.random.default_rng(sum(src) + sum(dst))
    images = [rng.integers(0, 256, size=(*src, 3), dtype=np.uint8),
              (rng.integers(0, 2, size=(*src, 3)) * 255).astype(np.uint8)]  # hard edges: over/undershoot clipping
    resize = ExactResize((dst[1], dst[0]), resample)
    method = Image.Resampling[resample.upper()]
    for rgb in images:  # not the probe image the pass order was settled on
        want = np.asarray(Image.fromarray(rgb).resize((dst[1], dst[0]), method))
        got = resize(torch.from_numpy(rgb)).numpy()
        assert got.dtype == np.uint8 and np.array_equal(got, want)
    assert all(plan is not None for plan in resize._plans.values())  # our two passes, not the Pillow fallback


def test_random_sizes_equal_pillow():
    rng = np.random.default_rng(5)
    for _ in range(30):
        src, dst = rng.integers(2, 90, 2), rng.integers(2, 90, 2)
        rgb = rng.integers(0, 256, size=(*src, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(rgb).resize((int(dst[1]), int(dst[0])), Image.Resampling.BICUBIC))
        resize = ExactResize((int(dst[1]), int(dst[0])), "bicubic")
        assert np.array_equal(resize(torch.from_numpy(rgb)).numpy(), want)
        assert all(plan is not None for plan in resize._plans.values())
