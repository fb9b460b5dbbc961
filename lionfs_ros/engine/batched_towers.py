"""One vision tower over the frames of several streams at once (a ``StreamGroup``'s round).

On a GPU each batch size of ``BUCKETS`` is one CUDA graph (resized uint8 frames ``[B, S, S, 3]`` ->
normalization -> tower -> tokens ``[B, n, C]``; the tower is ``fused_tower``'s, compiled where Triton works),
captured when the group is built; the round's frames go up through one pinned buffer and through one
batched exact resize (a dozen kernels for the lot) before the replay; a round with 3 frames
runs the graph of 4 (the spare row holds an older frame, its tokens are not used). Run eagerly, a
tower of a few hundred small kernels costs more in launches than in arithmetic, so the batched towers
would grow with the number of streams; from a graph they cost about one frame's launches.

Each row's arithmetic is the tower's own (rows do not mix), with the device resize of
``DeviceImageProcessor``, so a stream's tokens are the ones its own ``GraphedTower`` gives, up to the
matrix products' summation order at another batch size.
"""
from __future__ import annotations

import numpy as np
import torch

from lionfs_ros.model.image_processing import DeviceImageProcessor

from .batched_step import BUCKETS, bucket_for
from .graphed_frame import capture_tower
from .fused_tower import tower_forward


class GraphedTowerBatch:
    """RGB frames ``[H, W, 3]`` uint8 (one per stream) -> tokens ``[B, n, C]`` of one vision encoder."""

    def __init__(self, encoder, device: torch.device, streams: int, compile: bool = False, attention: str = "triton"):
        """``attention``: the fused tower's (``FusedTower``: 'triton' where the kernel can run, or 'sdpa')."""
        self.encoder = encoder
        self.prep = DeviceImageProcessor(encoder.processor, device)
        self.forward = tower_forward(encoder, compile, attention)
        self.buckets = [b for b in BUCKETS if b <= bucket_for(min(streams, BUCKETS[-1]))]
        self.resized = torch.zeros(self.buckets[-1], *self.prep.size, 3, dtype=torch.uint8, device=device)
        self.capture_stream = torch.cuda.Stream(device)
        with torch.no_grad():
            self._graphs = {b: capture_tower(self.forward, lambda b=b: self._body(b), self.capture_stream)
                            for b in self.buckets}

    def _body(self, b: int) -> torch.Tensor:
        return self.forward(self.prep.normalize(self.resized[:b]))  # [B, n, C]

    @torch.no_grad()
    def __call__(self, frames: list[np.ndarray]) -> torch.Tensor:
        chunks = []
        for lo in range(0, len(frames), self.buckets[-1]):
            chunk = frames[lo:lo + self.buckets[-1]]
            self.resized[:len(chunk)].copy_(self.prep.resize_many(chunk))  # one upload, one resize for a size
            graph, tokens = self._graphs[bucket_for(len(chunk))]
            graph.replay()
            chunks.append(tokens[:len(chunk)].clone())
        return torch.cat(chunks)  # [len(frames), n, C]
