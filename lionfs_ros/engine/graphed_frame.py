"""A frame's vision side as CUDA graphs: the static backend's towers and fusion (its LLM side: ``cuda_graphs.py``).

- ``FrameUpload``: camera frames -> one fixed device copy per frame shape, through a pinned buffer;
- ``GraphedTower``: RGB -> one encoder's tokens: the exact resize (Pillow's pixels) and the fused tower, each a
  graph; ``pair`` runs a decided frame through the general and ego towers from one upload, side by side;
- ``GraphedFusion``: a decided frame's tower tokens -> fused tokens (``model.embed_frames``) as one graph.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from lionfs_ros.model.image_processing import DeviceImageProcessor, PinnedUpload

from .cuda_graphs import capture_graph
from .fused_tower import TowerAttentionError, tower_forward

log = logging.getLogger(__name__)


def _compile_failed(forward, err: Exception) -> None:
    torch.cuda.synchronize()
    forward.use_eager(f"torch.compile failed: {type(err).__name__}: {err}")
    log.warning("vision tower: %s; running without it", forward.compile_fallback)


def falling_back(forward, run):
    """``run()`` (a tower's first runs); where ``forward`` (a ``FusedTower``) fails in a piece it can do without, it
    gives that piece up with the reason logged and runs again: the Triton attention kernel (SDPA instead), then
    ``torch.compile`` (the plain ops)."""
    while True:
        try:
            return run()
        except TowerAttentionError as err:
            torch.cuda.synchronize()
            forward.use_sdpa(str(err))
            log.warning("vision tower: %s; running SDPA", err)
        except Exception as err:
            if not getattr(forward, "compiled", False):
                raise
            _compile_failed(forward, err)


def capture_tower(forward, body, capture_stream: torch.cuda.Stream, pool=None) -> tuple[torch.cuda.CUDAGraph, object]:
    """``capture_graph`` of a tower's ``body``; where the warm-up runs fail in the Triton attention or in compiled
    code, without it (``falling_back``)."""
    return falling_back(forward, lambda: capture_graph(body, capture_stream, pool))


class FrameUpload:
    """Camera frames -> one fixed device copy ``[1, H, W, 3]`` per frame shape (through a pinned buffer, async).

    The general and ego ``GraphedTower``s of one model share it: their resize graphs read the same copy, so a
    decided frame (both towers) goes up once."""

    def __init__(self, device: torch.device):
        self.device = device
        self._pinned = PinnedUpload(device)
        self._frames: dict[tuple, torch.Tensor] = {}  # frame shape -> its device copy

    def buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        if shape not in self._frames:
            self._frames[shape] = torch.zeros(1, *shape, dtype=torch.uint8, device=self.device)
        return self._frames[shape]

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        return self._pinned([rgb], out=self.buffer(rgb.shape))


class GraphedTower:
    """RGB frame -> tokens ``[1, n, C]`` of one vision encoder, from two CUDA graphs: the exact resize on the device
    (one graph per camera frame size, compiled with the tower) into a fixed ``[1, S, S, 3]`` buffer, then
    normalization and the tower (``fused_tower``: fused projections, compiled where Triton works). The frame goes up
    through ``upload`` (shared with the model's other tower: ``pair`` uploads a decided frame once and runs the two
    towers side by side). The graphs are captured at the first frame (a stream of a ``StreamGroup`` whose frames
    all go through the batched towers never captures them); the compilation runs here, when the engine is built."""

    def __init__(self, encoder, device: torch.device, compile: bool = False, upload: FrameUpload | None = None,
                 attention: str = "triton"):
        """``attention``: the fused tower's (``FusedTower``: 'triton' where the kernel can run, or 'sdpa')."""
        self.encoder = encoder
        self.prep = DeviceImageProcessor(encoder.processor, device, compile)
        self.forward = tower_forward(encoder, compile, attention)
        self.upload = upload or FrameUpload(device)
        self.resized = torch.zeros(1, *self.prep.size, 3, dtype=torch.uint8, device=device)
        self.capture_stream = torch.cuda.Stream(device)
        self.side_stream = torch.cuda.Stream(device)  # where ``pair`` runs this tower beside the other one
        self._resizes: dict[tuple, torch.cuda.CUDAGraph] = {}  # camera frame shape -> its resize graph
        self.graph = self.out = None
        if getattr(self.forward, "compiled", False) or getattr(self.forward, "attention_run", None) == "triton":
            with torch.no_grad():  # one eager run: compiles the fused pieces and the kernel (cached for every capture)
                falling_back(self.forward, self._body)

    def _body(self) -> torch.Tensor:
        return self.forward(self.prep.normalize(self.resized))  # [1, n, C]

    def _resize_graph(self, shape: tuple[int, ...]) -> torch.cuda.CUDAGraph:
        if shape not in self._resizes:
            frame = self.upload.buffer(shape)
            body = lambda: self.resized.copy_(self.prep.resize_on_device(frame))  # noqa: E731
            try:
                self._resizes[shape], _ = capture_graph(body, self.capture_stream, None)
            except Exception as err:  # compiling the resize failed (on the warm-up runs): the plain passes
                if not self.prep.compiled:
                    raise
                torch.cuda.synchronize()
                self.prep.use_eager()
                log.warning("vision tower: compiled resize failed (%s: %s); running without it",
                            type(err).__name__, err)
                self._resizes[shape], _ = capture_graph(body, self.capture_stream, None)
        return self._resizes[shape]

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        if self.prep.exact:
            self.upload(rgb)
        self._replay(rgb)
        return self.out.clone()

    def _replay(self, rgb: np.ndarray) -> None:
        """The frame's tokens into ``out``; with an exact resize, ``rgb`` is already up (``upload``'s buffer)."""
        if self.prep.exact:
            self._resize_graph(rgb.shape).replay()
        else:  # a resample without a device plan: Pillow on the CPU, the resized frame goes up
            self.prep.upload([self.prep.processor.resize_one(rgb)], out=self.resized)
        if self.graph is None:
            self.graph, self.out = capture_tower(self.forward, self._body, self.capture_stream)
        self.graph.replay()

    @torch.no_grad()
    def pair(self, other, rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(self(rgb), other(rgb))``. Where ``other`` is a ``GraphedTower`` sharing this one's upload, the frame goes
        up once for both, and ``other``'s graphs run on a stream of their own beside this one's (one frame leaves
        most of the GPU idle: the two towers overlap); the caller's stream waits for both."""
        if not (isinstance(other, GraphedTower) and other.upload is self.upload):
            return self(rgb), other(rgb)
        if self.prep.exact or other.prep.exact:
            self.upload(rgb)
        main = torch.cuda.current_stream(self.resized.device)
        other.side_stream.wait_stream(main)  # the frame is up, and the last reads of other's output are done
        self._replay(rgb)  # this (the general, longer) tower launched first
        with torch.cuda.stream(other.side_stream):
            other._replay(rgb)
        main.wait_stream(other.side_stream)
        return self.out.clone(), other.out.clone()  # on the caller's stream, after both


class GraphedFusion:
    """A decided frame's tower tokens -> its fused tokens ``[n, d]`` (``model.embed_frames``: the connector, and with
    an egocentric source the ego window's pooling, its connector and the aggregation router) as one CUDA graph
    instead of some thirty small eager kernels. The inputs are copied into fixed buffers; one graph per input
    shapes, captured at the first frame on a stream of its own."""

    def __init__(self, model):
        self.model = model
        self.capture_stream = torch.cuda.Stream(model.device)
        self._graphs: dict[tuple, tuple] = {}  # input shapes and dtypes -> (general in, ego in, graph, out)

    @torch.no_grad()
    def __call__(self, general: torch.Tensor, ego: torch.Tensor | None = None) -> torch.Tensor:
        """``general [1, n, C]``, ``ego [r, n, C']`` (the ego window; None without an ego source) -> ``[n, d]``."""
        key = (tuple(general.shape), general.dtype, None if ego is None else (tuple(ego.shape), ego.dtype))
        if key not in self._graphs:
            general_in = torch.zeros_like(general, device=self.model.device)
            ego_in = None if ego is None else torch.zeros_like(ego, device=self.model.device)
            body = lambda: self.model.embed_frames(general_in, ego_in)[0]  # noqa: E731
            self._graphs[key] = (general_in, ego_in, *capture_graph(body, self.capture_stream, None))
        general_in, ego_in, graph, out = self._graphs[key]
        general_in.copy_(general)
        if ego is not None:
            ego_in.copy_(ego)
        graph.replay()
        return out.clone()
