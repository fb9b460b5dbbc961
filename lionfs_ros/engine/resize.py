"""PIL's ``Image.resize`` (bicubic or bilinear, uint8 RGB) on any torch device, bit for bit.

Pillow resamples 8-bit images in two passes, each a weighted sum with fixed-point integer
coefficients (``PRECISION_BITS = 22``), rounded and clipped to uint8 after each pass
(``libImaging/Resample.c``: ``precompute_coeffs``, ``normalize_coeffs_8bpc``, ``clip8``). Here each
pass is one matrix product with those same integer coefficients. Every product and sum is an
integer below 2**53, so float64 arithmetic is exact in any summation order (CPU or GPU); the
coefficients are computed with the same double-precision expressions as Pillow's C code.

Which pass goes first depends on the Pillow version and the sizes (recent versions do not always
go horizontal first), so for each (input size, output size) pair the order is settled once by
resizing a random probe image both ways and keeping the one equal to the installed Pillow's
result; if neither is, that size pair falls back to Pillow itself. ``test_resize.py`` checks
frames against Pillow.
"""
from __future__ import annotations

import torch

PRECISION_BITS = 32 - 8 - 2
ROUND_HALF = float(1 << (PRECISION_BITS - 1))
SCALE = float(1 << PRECISION_BITS)
UINT8_TOP = 255.0
BICUBIC_A = -0.5


def _bicubic(x: float) -> float:
    a = BICUBIC_A
    if x < 0.0:
        x = -x
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _bilinear(x: float) -> float:
    if x < 0.0:
        x = -x
    if x < 1.0:
        return 1.0 - x
    return 0.0


FILTERS = {"bicubic": (_bicubic, 2.0), "bilinear": (_bilinear, 1.0)}


def coefficients(in_size: int, out_size: int, resample: str) -> torch.Tensor:
    """Pillow's fixed-point weights as a dense ``[out_size, in_size]`` float64 matrix (integers)."""
    fn, support = FILTERS[resample]
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    out = torch.zeros(out_size, in_size, dtype=torch.float64)
    for xx in range(out_size):
        center = 0.0 + (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [fn((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = 0.0
        for w in weights:
            total += w
        for x, w in enumerate(weights):
            w = w / total if total != 0.0 else w
            fixed = int(-0.5 + w * SCALE) if w < 0 else int(0.5 + w * SCALE)  # C casts truncate toward zero
            out[xx, xmin + x] = float(fixed)
    return out


def _clip8(acc: torch.Tensor) -> torch.Tensor:
    return torch.floor((acc + ROUND_HALF) / SCALE).clamp_(0.0, UINT8_TOP)


class ExactResize:
    """``rgb [H, W, 3] uint8`` (a tensor on any device) -> ``[S_h, S_w, 3] uint8`` equal to Pillow's resize."""

    def __init__(self, size: tuple[int, int], resample: str):
        if resample not in FILTERS:
            raise ValueError(f"exact resize supports {sorted(FILTERS)}, not {resample!r}")
        self.width, self.height = size
        self.resample = resample
        self._plans: dict[tuple, tuple | None] = {}

    def _plan(self, in_h: int, in_w: int, device: torch.device):
        key = (in_h, in_w, str(device))
        if key not in self._plans:
            horizontal = coefficients(in_w, self.width, self.resample)  # [S_w, W]
            vertical = coefficients(in_h, self.height, self.resample)  # [S_h, H]
            order = _settle_order(in_h, in_w, (self.height, self.width), self.resample, horizontal, vertical)
            self._plans[key] = None if order is None else (horizontal.to(device), vertical.to(device), order)
        return self._plans[key]

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        in_h, in_w, _ = rgb.shape
        plan = self._plan(in_h, in_w, rgb.device)
        if plan is None:  # this Pillow resamples these sizes some other way: use it
            out = _pillow(rgb.cpu().numpy(), (self.height, self.width), self.resample).copy()
            return torch.from_numpy(out).to(rgb.device)
        horizontal, vertical, order = plan
        return _two_pass(rgb, horizontal, vertical, order)


HORIZONTAL_FIRST, VERTICAL_FIRST = "horizontal", "vertical"
PROBE_SEED = 0


def _two_pass(rgb: torch.Tensor, horizontal: torch.Tensor, vertical: torch.Tensor, order: str) -> torch.Tensor:
    planes = rgb.permute(2, 0, 1).to(torch.float64)  # [3, H, W]
    if order == HORIZONTAL_FIRST:
        out = _clip8(vertical @ _clip8(planes @ horizontal.T))  # [3, S_h, S_w]
    else:
        out = _clip8(_clip8(vertical @ planes) @ horizontal.T)
    return out.permute(1, 2, 0).to(torch.uint8)


def _pillow(rgb, out_hw: tuple[int, int], resample: str):
    from PIL import Image
    import numpy as np

    method = Image.Resampling[resample.upper()]
    return np.asarray(Image.fromarray(rgb).resize((out_hw[1], out_hw[0]), method))


def _settle_order(in_h, in_w, out_hw, resample, horizontal, vertical) -> str | None:
    """The pass order that reproduces the installed Pillow on a random probe image (None: neither does)."""
    import numpy as np

    probe = np.random.default_rng(PROBE_SEED).integers(0, 256, size=(in_h, in_w, 3), dtype=np.uint8)
    want = torch.from_numpy(_pillow(probe, out_hw, resample).copy())  # Pillow's array is read-only
    for order in (HORIZONTAL_FIRST, VERTICAL_FIRST):
        if torch.equal(_two_pass(torch.from_numpy(probe), horizontal, vertical, order), want):
            return order
    return None
