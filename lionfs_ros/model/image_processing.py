"""Image processing of the vision encoders: resize (stretch or letterbox), rescale, normalize.

One module, used by the model (``VisionEncoder.preprocess``), the data pipeline (pixel caches
keep the resized uint8 frames), training (normalization on the device) and the engine's CUDA
graph path (``DeviceImageProcessor``).

``ImageProcessor`` runs on the CPU with Pillow: a frame ``[H, W, 3]`` uint8 is
- ``stretch``: resized to ``S x S`` (the aspect ratio is not kept), or
- ``letterbox``: resized so that its long side is ``S`` and its short side the even size nearest
  the aspect ratio (half rounds up), then placed on a black ``S x S`` square, centred, the offset
  rounded down to an even pixel (the extra rows / columns go to the bottom / right).
  VideoLLM-online's input: its videos are prepared by ffmpeg with ``scale='if(gt(iw,ih),S,-2)':
  'if(gt(iw,ih),-2,S)',pad=S:S:(ow-iw)/2:(oh-ih)/2:color=black`` (``letterbox_geometry`` states
  that arithmetic; ffmpeg's swscale bicubic and the yuv420p/H.264 round trip are not reproduced:
  the resize is Pillow's, like every other mode here);
then rescaled to [0, 1] (``/ UINT8_MAX``) and normalized ``(x - mean) / std`` in float32.

``DeviceImageProcessor`` gives the same pixels with the resize on any torch device: Pillow's
bicubic / bilinear resize of 8-bit images is reproduced bit for bit (``ExactResize``). Pillow
resamples in two passes, each a weighted sum with fixed-point integer coefficients
(``PRECISION_BITS = 22``), rounded and clipped to uint8 after each pass (``libImaging/Resample.c``:
``precompute_coeffs``, ``normalize_coeffs_8bpc``, ``clip8``). Here each pass is Pillow's own int32
arithmetic on the filter's band (each output pixel reads only its few input pixels: a gather, a
product with the integer coefficients, a sum over the taps; integers, so exact in any summation
order, CPU or GPU), on the frame in its ``[H, W, 3]`` layout (no transposes, no float64 products
over whole rows). Which pass goes first depends on the
Pillow version and the sizes, so for each (input size, output size) pair the order is settled
once by resizing a random probe image both ways and keeping the one equal to the installed
Pillow's result; if neither is, that size pair falls back to Pillow itself. Other filters
(nearest, lanczos) always run Pillow on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import logging

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)
UINT8_MAX = 255.0
RESAMPLE_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
STRETCH, LETTERBOX = "stretch", "letterbox"
RESIZE_MODES = (STRETCH, LETTERBOX)
PAD_VALUE = 0  # letterbox padding: black
EVEN = 2  # letterbox sizes and offsets are multiples of this (ffmpeg's -2; yuv420p's chroma grid)


def letterbox_geometry(height: int, width: int, side: int) -> tuple[int, int, int, int]:
    """``(new_h, new_w, top, left)``: an ``height x width`` frame resized into a ``side`` square and placed on it.

    The long side becomes ``side`` (a square frame: both); the short one ``round(side * short / long)``
    to the nearest even size, half up (ffmpeg's ``-2``: ``av_rescale`` to a multiple of 2), at least 2;
    the offsets ``(side - new) / 2`` truncated, then rounded down to even (yuv420p's chroma grid)."""
    if width > height:
        new_w, new_h = side, _even_rescale(side, height, width)
    else:
        new_h, new_w = side, _even_rescale(side, width, height)
    return new_h, new_w, (side - new_h) // 2 // EVEN * EVEN, (side - new_w) // 2 // EVEN * EVEN



def _even_rescale(side: int, short: int, long: int) -> int:
    """``side * short / long`` to the nearest multiple of 2 (half up), within [2, side]."""
    return min(side, max(EVEN, (side * short + long) // (EVEN * long) * EVEN))


def place_on_black(inner: np.ndarray, side: int, top: int, left: int) -> np.ndarray:
    """uint8 ``[h, w, 3]`` -> ``[side, side, 3]``: ``inner`` at ``(top, left)`` on black."""
    out = np.full((side, side, 3), PAD_VALUE, dtype=np.uint8)
    out[top:top + inner.shape[0], left:left + inner.shape[1]] = inner
    return out


def place_on_black_tensor(inner: torch.Tensor, side: int, top: int, left: int) -> torch.Tensor:
    """``place_on_black`` of a uint8 ``[..., h, w, 3]`` tensor, on its device."""
    out = torch.full((*inner.shape[:-3], side, side, 3), PAD_VALUE, dtype=torch.uint8, device=inner.device)
    out[..., top:top + inner.shape[-3], left:left + inner.shape[-2], :] = inner
    return out


@dataclass(frozen=True)
class ImageProcessor:
    """One encoder's input recipe: ``image_size`` square pixels, resized (``resize_mode``) with ``resample``."""

    image_size: int
    resample: str = "bicubic"
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resize_mode: str = STRETCH

    def __post_init__(self):
        if self.resample not in RESAMPLE_FILTERS:
            raise ValueError(f"resample {self.resample!r} is not one of {tuple(RESAMPLE_FILTERS)}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize {self.resize_mode!r} is not one of {RESIZE_MODES}")

    @classmethod
    def from_config(cls, cfg, image_size: int) -> "ImageProcessor":
        """From a ``VisionConfig`` and the tower's image size."""
        return cls(int(image_size), cfg.resample, tuple(cfg.image_mean), tuple(cfg.image_std), cfg.resize)

    def resize_one(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 ``[H, W, 3]`` -> ``[S, S, 3]`` (Pillow, on the CPU)."""
        method = RESAMPLE_FILTERS[self.resample]
        if self.resize_mode == LETTERBOX:
            new_h, new_w, top, left = letterbox_geometry(rgb.shape[0], rgb.shape[1], self.image_size)
            inner = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), method))  # [new_h, new_w, 3]
            return place_on_black(inner, self.image_size, top, left)
        return np.asarray(Image.fromarray(rgb).resize((self.image_size, self.image_size), method))

    def resize(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``[T, H, W, 3]`` (or one ``[H, W, 3]``) -> uint8 ``[T, S, S, 3]``."""
        frames = _check_frames(frames)
        if len(frames) == 0:
            return np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        return np.stack([self.resize_one(frame) for frame in frames])

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 ``[T, S, S, 3]`` (any device) -> float32 ``[T, 3, S, S]``: ``(x / 255 - mean) / std``."""
        values = pixels.permute(0, 3, 1, 2).float() / UINT8_MAX
        mean = torch.tensor(self.image_mean, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std, device=pixels.device).view(1, 3, 1, 1)
        return (values - mean) / std

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``[T, H, W, 3]`` (any size) -> float32 ``[T, 3, S, S]`` normalized pixels (on the CPU)."""
        return self.normalize(torch.from_numpy(self.resize(frames)))


def normalize(pixels: torch.Tensor, processor: ImageProcessor) -> torch.Tensor:
    """``processor.normalize(pixels)``, for call sites that pass the recipe along."""
    return processor.normalize(pixels)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return frames


class PinnedUpload:
    """RGB frames of one size -> uint8 ``[B, H, W, 3]`` on ``device``.

    On CUDA through a pinned host buffer kept per shape: one copy on the CPU (torch's, on the intra-op threads: the
    GPU waits for it at a frame's start), then an asynchronous transfer on the current stream (a pageable tensor's
    ``.to`` copies twice and waits for the GPU); elsewhere a plain copy."""

    def __init__(self, device: torch.device):
        self.device = device
        self._staging: dict[tuple, tuple] = {}  # frames' shape -> (pinned host buffer, its last transfer's event)

    def __call__(self, frames: list[np.ndarray], out: torch.Tensor | None = None) -> torch.Tensor:
        shape = (len(frames), *frames[0].shape)
        if self.device.type != "cuda":
            host = torch.from_numpy(np.stack(frames))  # np.stack copies: read-only frames are fine
            return host.to(self.device) if out is None else out.copy_(host)
        if shape not in self._staging:
            self._staging[shape] = (torch.empty(shape, dtype=torch.uint8, pin_memory=True), torch.cuda.Event())
        host, sent = self._staging[shape]
        sent.synchronize()  # the previous transfer out of this buffer is done
        for i, frame in enumerate(frames):
            if frame.flags.writeable:  # torch's copy runs on the intra-op threads (numpy's on one)
                host[i].copy_(torch.from_numpy(frame))
            else:  # torch would warn that it cannot guard a read-only array
                np.copyto(host[i].numpy(), frame)
        if out is None:
            out = torch.empty(shape, dtype=torch.uint8, device=self.device)
        out.copy_(host, non_blocking=True)
        sent.record()
        return out


class DeviceImageProcessor:
    """``ImageProcessor`` with the resize and normalization on ``device``, the same pixels bit for bit."""

    def __init__(self, processor: ImageProcessor, device: torch.device, compile: bool = False):
        """``compile``: each exact resize's two passes as ``torch.compile``d kernels (the same integers; see
        ``ExactResize``)."""
        self.processor, self.device = processor, device
        self.size = (processor.image_size, processor.image_size)
        self.exact = processor.resample in FILTERS
        self.compiled = compile
        self._resizers: dict[tuple[int, int], ExactResize] = {}  # (width, height) out -> its exact resize
        self._upload = PinnedUpload(device)
        self.mean = torch.tensor(processor.image_mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(processor.image_std, device=device).view(1, 3, 1, 1)

    def resize(self, rgb: np.ndarray) -> torch.Tensor:
        """RGB ``[H, W, 3]`` uint8 -> ``[S, S, 3]`` uint8 on the device."""
        if not self.exact:
            return torch.from_numpy(self.processor.resize_one(rgb).copy()).to(self.device)
        return self.resize_on_device(self.upload([rgb])[0])

    def resize_many(self, frames: list[np.ndarray]) -> torch.Tensor:
        """RGB frames ``[H, W, 3]`` uint8 -> ``[B, S, S, 3]`` uint8 on the device, each as ``resize`` gives it.

        Frames of one size go up in one copy and through one batched resize (a few kernels for the lot
        instead of a few per frame); mixed sizes or a resample without an exact plan go one by one."""
        if not self.exact or len({f.shape for f in frames}) != 1:
            return torch.stack([self.resize(f) for f in frames])
        return self.resize_on_device(self.upload(frames))

    def upload(self, frames: list[np.ndarray], out: torch.Tensor | None = None) -> torch.Tensor:
        """RGB frames of one size -> uint8 ``[B, H, W, 3]`` on the device (into ``out`` if given): ``PinnedUpload``."""
        return self._upload(frames, out)

    def resize_on_device(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[..., H, W, 3]`` on the device -> ``[..., S, S, 3]``."""
        if self.processor.resize_mode == LETTERBOX:
            side = self.processor.image_size
            new_h, new_w, top, left = letterbox_geometry(frames.shape[-3], frames.shape[-2], side)
            return place_on_black_tensor(self._resizer((new_w, new_h))(frames), side, top, left)
        return self._resizer(self.size)(frames)

    def _resizer(self, size: tuple[int, int]) -> "ExactResize":
        if size not in self._resizers:
            self._resizers[size] = ExactResize(size, self.processor.resample, self.compiled)
        return self._resizers[size]

    @property
    def compile_fallback(self) -> str | None:
        """Why a compiled resize runs the plain passes (None: none does)."""
        return next((r.compile_fallback for r in self._resizers.values() if r.compile_fallback), None)

    def use_eager(self) -> None:
        """Give up the compiled resize (e.g. compiling failed): the same passes as plain ops from now on."""
        self.compiled = False
        for resizer in self._resizers.values():
            resizer.two_pass = _two_pass

    def normalize(self, resized: torch.Tensor) -> torch.Tensor:
        """uint8 ``[S, S, 3]`` or ``[B, S, S, 3]`` on the device -> float32 ``[B, 3, S, S]`` (``B = 1`` for one frame;
        the same arithmetic as ``ImageProcessor``)."""
        pixels = resized.reshape(-1, *resized.shape[-3:]).permute(0, 3, 1, 2).float() / UINT8_MAX  # [B, 3, S, S]
        return (pixels - self.mean) / self.std


# Pillow's resize, exactly, on any device.

PRECISION_BITS = 32 - 8 - 2
ROUND_HALF = 1 << (PRECISION_BITS - 1)
SCALE = float(1 << PRECISION_BITS)
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


def filter_band(in_size: int, out_size: int, resample: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow's fixed-point weights as a band: ``index [out_size, taps]`` (the input pixel each tap reads,
    long) and ``weight [out_size, taps]`` (int32 integers; 0 on the taps past a pixel's filter support)."""
    fn, support = FILTERS[resample]
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    rows = []  # (xmin, fixed-point weights) per output pixel
    for xx in range(out_size):
        center = 0.0 + (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [fn((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = 0.0
        for w in weights:
            total += w
        fixed = []
        for w in weights:
            w = w / total if total != 0.0 else w
            fixed.append(int(-0.5 + w * SCALE) if w < 0 else int(0.5 + w * SCALE))  # C casts truncate toward zero
        rows.append((xmin, fixed))
    taps = max(len(fixed) for _, fixed in rows)
    index = torch.zeros(out_size, taps, dtype=torch.long)
    weight = torch.zeros(out_size, taps, dtype=torch.int32)
    for xx, (xmin, fixed) in enumerate(rows):
        index[xx] = torch.clamp(torch.arange(xmin, xmin + taps), max=in_size - 1)
        weight[xx, :len(fixed)] = torch.tensor(fixed, dtype=torch.int32)
    return index, weight


def _band_pass(rgb: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, dim: int) -> torch.Tensor:
    """One pass of Pillow's resample along ``dim`` (-3: rows, -2: columns) of uint8 ``[..., H, W, 3]``."""
    gathered = rgb.index_select(dim, index.flatten()).unflatten(dim, tuple(index.shape))  # [..., out, taps, ...]
    taps = weight.view(*weight.shape, *([1] * (-dim - 1)))  # [out, taps, 1(, 1)]: broadcast over the rest
    acc = (gathered * taps).sum(dim, dtype=torch.int32) + ROUND_HALF  # int32, as Pillow's accumulator
    return (acc >> PRECISION_BITS).clamp_(0, int(UINT8_MAX)).to(torch.uint8)  # clip8


class ExactResize:
    """``rgb [..., H, W, 3] uint8`` (a tensor on any device) -> ``[..., S_h, S_w, 3] uint8`` equal to Pillow's resize."""

    def __init__(self, size: tuple[int, int], resample: str, compile: bool = False):
        """``compile``: the two passes through ``torch.compile`` (each pass's gather, integer products, sum, shift
        and clip become one kernel instead of six, and the int32 products are never written out); integers
        throughout, so the pixels are the same as the plain ops'. That is checked at the first call of each input
        shape (on a random probe of that shape, outside any graph capture: the graphs' warm-up runs come first);
        a difference switches to the plain passes, the reason in ``compile_fallback``."""
        if resample not in FILTERS:
            raise ValueError(f"exact resize supports {sorted(FILTERS)}, not {resample!r}")
        self.width, self.height = size
        self.resample = resample
        self._plans: dict[tuple, tuple | None] = {}
        self.two_pass = torch.compile(_two_pass, dynamic=False) if compile else _two_pass
        self.compile_fallback: str | None = None
        self._checked: set[tuple] = set()  # input shapes (and devices) whose compiled passes equal the plain ones

    def _plan(self, in_h: int, in_w: int, device: torch.device):
        key = (in_h, in_w, str(device))
        if key not in self._plans:
            horizontal = filter_band(in_w, self.width, self.resample)  # index, weight: [S_w, taps]
            vertical = filter_band(in_h, self.height, self.resample)  # [S_h, taps]
            order = _settle_order(in_h, in_w, (self.height, self.width), self.resample, horizontal, vertical)
            self._plans[key] = None if order is None else (
                tuple(t.to(device) for t in horizontal), tuple(t.to(device) for t in vertical), order)
        return self._plans[key]

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        in_h, in_w, _ = rgb.shape[-3:]
        plan = self._plan(in_h, in_w, rgb.device)
        if plan is None:  # this Pillow resamples these sizes some other way: use it
            frames = rgb.reshape(-1, in_h, in_w, 3).cpu().numpy()
            out = np.stack([_pillow(f, (self.height, self.width), self.resample) for f in frames])
            return torch.from_numpy(out).to(rgb.device).reshape(*rgb.shape[:-3], self.height, self.width, 3)
        horizontal, vertical, order = plan
        if self.two_pass is not _two_pass and (rgb.shape, rgb.device) not in self._checked:
            self._check_compiled(rgb, plan)
        return self.two_pass(rgb, horizontal, vertical, order)

    def _check_compiled(self, rgb: torch.Tensor, plan: tuple) -> None:
        probe = torch.randint(0, 256, rgb.shape, generator=torch.Generator().manual_seed(PROBE_SEED), dtype=torch.uint8)
        probe = probe.to(rgb.device)
        if torch.equal(self.two_pass(probe, *plan), _two_pass(probe, *plan)):
            self._checked.add((rgb.shape, rgb.device))
        else:
            self.two_pass = _two_pass
            self.compile_fallback = f"compiled resize differs from the plain passes at {list(rgb.shape)}"
            log.warning("exact resize: %s; running the plain passes", self.compile_fallback)


HORIZONTAL_FIRST, VERTICAL_FIRST = "horizontal", "vertical"
PROBE_SEED = 0


def _two_pass(rgb: torch.Tensor, horizontal: tuple, vertical: tuple, order: str) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> ``[..., S_h, S_w, 3]``: the two band passes in ``order``."""
    if order == HORIZONTAL_FIRST:
        return _band_pass(_band_pass(rgb, *horizontal, dim=-2), *vertical, dim=-3)
    return _band_pass(_band_pass(rgb, *vertical, dim=-3), *horizontal, dim=-2)


def _pillow(rgb, out_hw: tuple[int, int], resample: str):
    method = RESAMPLE_FILTERS[resample]
    return np.asarray(Image.fromarray(rgb).resize((out_hw[1], out_hw[0]), method))


def _settle_order(in_h, in_w, out_hw, resample, horizontal, vertical) -> str | None:
    """The pass order that reproduces the installed Pillow on a random probe image (None: neither does)."""
    probe = np.random.default_rng(PROBE_SEED).integers(0, 256, size=(in_h, in_w, 3), dtype=np.uint8)
    want = torch.from_numpy(_pillow(probe, out_hw, resample).copy())  # Pillow's array is read-only
    for order in (HORIZONTAL_FIRST, VERTICAL_FIRST):
        if torch.equal(_two_pass(torch.from_numpy(probe), horizontal, vertical, order), want):
            return order
    return None
