"""Vision towers: frames -> pixels -> patch grid -> (global + N x N pooled) frame tokens.

Any HF vision model whose output has ``last_hidden_state`` (and ``pooler_output`` for the
``pooler`` global token) works: SigLIP, CLIP, ... A full dual-tower checkpoint (``SiglipModel``,
``CLIPModel``) is accepted by path; only its vision tower is loaded.

Preprocessing is ``model.image_processing`` (Pillow resize + rescale + normalize, no torchvision)
and runs on the CPU, so pixels are identical whatever device the tower runs on.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel

from .configuration_lionfs import VisionConfig
from .image_processing import ImageProcessor


def load_vision_tower(cfg: VisionConfig, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """Build the tower named by ``cfg``: weights from ``cfg.path`` (safetensors only) or fresh from ``cfg.config``."""
    if cfg.config is not None:
        hf_config = AutoConfig.for_model(**cfg.config)
        return AutoModel.from_config(hf_config, dtype=dtype)
    hf_config = AutoConfig.from_pretrained(cfg.path, local_files_only=True)
    vision_config = getattr(hf_config, "vision_config", None) or hf_config
    tower_class = type(AutoModel.from_config(vision_config, dtype=torch.float32))
    tower, info = tower_class.from_pretrained(
        cfg.path, config=vision_config, dtype=dtype, use_safetensors=True, local_files_only=True, output_loading_info=True
    )
    if info["missing_keys"]:
        raise ValueError(f"vision tower at {cfg.path} lacks weights: {sorted(info['missing_keys'])[:8]} ...")
    return tower


def vision_config_to_inline(tower: PreTrainedModel) -> dict:
    """The tower's HF config as a dict that ``AutoConfig.for_model`` rebuilds (saved models use it)."""
    data = tower.config.to_dict()
    for key in ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype"):
        data.pop(key, None)
    return data


class VisionEncoder(nn.Module):
    """A vision tower plus the frame-token recipe of one source."""

    def __init__(self, cfg: VisionConfig, tower: PreTrainedModel):
        super().__init__()
        self.cfg = cfg
        self.tower = tower
        tower_cfg = tower.config
        self.image_size = int(cfg.image_size or tower_cfg.image_size)
        self.patch_size = int(tower_cfg.patch_size)
        self.hidden_size = int(tower_cfg.hidden_size)
        self.grid_side = self.image_size // self.patch_size
        self.processor = ImageProcessor.from_config(cfg, self.image_size)
        self.tower.requires_grad_(cfg.trainable)

    @property
    def tokens_per_frame(self) -> int:
        return self.cfg.tokens_per_frame

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``[T, H, W, 3]`` (any size) -> float32 ``[T, 3, S, S]`` normalized pixels (on CPU)."""
        return self.processor.preprocess(frames)

    def _run(self, pixels: torch.Tensor):
        param = next(self.tower.parameters())
        return self.tower(pixel_values=pixels.to(device=param.device, dtype=param.dtype))

    @staticmethod
    def _grid(last_hidden: torch.Tensor, side: int) -> torch.Tensor:
        num_prefix = last_hidden.shape[1] - side * side  # CLIP keeps a CLS token in front, SigLIP none
        if num_prefix < 0:
            raise ValueError(f"tower returned {last_hidden.shape[1]} tokens, fewer than a {side}x{side} patch grid")
        return last_hidden[:, num_prefix:].unflatten(1, (side, side))  # [T, h, w, C]

    def patch_grid(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels ``[T, 3, S, S]`` -> patch features ``[T, h, w, C]`` (what the slow thinker pools finer)."""
        return self._grid(self._run(pixels).last_hidden_state, self.grid_side)

    def frame_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels ``[T, 3, S, S]`` -> tokens ``[T, tokens_per_frame, C]``: global token, then the pooled grid row-major."""
        out = self._run(pixels)
        return self.tokens_from(out.last_hidden_state, lambda: getattr(out, "pooler_output", None))

    def tokens_from(self, last_hidden: torch.Tensor, pooler) -> torch.Tensor:
        """The tower's ``last_hidden_state [T, L, C]`` -> frame tokens; ``pooler()`` gives its ``pooler_output``
        ``[T, C]`` (or None), called only where the global token is the pooler's (the engine's fused tower)."""
        grid = self._grid(last_hidden, self.grid_side)  # [T, h, w, C]
        n = self.cfg.pool_grid
        pooled = pool_patch_grid(grid, n)  # [T, n*n, C]
        kind = self.cfg.global_token
        if kind == "none":
            return pooled
        if kind == "pooler":
            global_token = pooler()
            if global_token is None:
                raise ValueError("global_token='pooler' but this tower returns no pooler_output; use 'cls' or 'mean'")
        elif kind == "cls":
            global_token = last_hidden[:, 0]
        else:
            global_token = grid.mean(dim=(1, 2))
        return torch.cat([global_token[:, None], pooled], dim=1)  # [T, 1 + n*n, C]


def pool_patch_grid(grid: torch.Tensor, size: int) -> torch.Tensor:
    """Patch features ``[T, h, w, C]`` -> ``[T, size*size, C]``: the adaptive average pool, cells row-major.

    Where ``size`` divides both sides every cell is a ``h/size x w/size`` block, averaged as a mean over the grid's
    block view (one reduction kernel). That is the same average, and much faster on a GPU than PyTorch's
    adaptive pool on this channels-last layout (one frame of a 24x24 SigLIP grid to 3x3: 0.22 ms on an H200)."""
    t, h, w, c = grid.shape
    if h % size or w % size:
        return F.adaptive_avg_pool2d(grid.permute(0, 3, 1, 2), (size, size)).flatten(2).transpose(1, 2)
    blocks = grid.reshape(t, size, h // size, size, w // size, c)  # [T, size, bh, size, bw, C]
    return blocks.mean(dim=(2, 4)).flatten(1, 2)  # [T, size*size, C]


def pool_ego_tokens(tokens: torch.Tensor, frames_per_frame: int, tokens_per_frame: int) -> torch.Tensor:
    """Ego tokens at their own rate -> one entry per general frame.

    ``tokens``: ``[T * r, C]`` or ``[T * r, k, C]`` with ``k`` in {1, tokens_per_frame}; returns
    ``[T, tokens_per_frame, C]`` (mean over the ``r`` ego frames of each general frame; one
    vector per ego frame is broadcast to every token slot).
    """
    if tokens.dim() == 2:
        tokens = tokens[:, None]
    count, k, width = tokens.shape
    if count % frames_per_frame:
        raise ValueError(f"{count} ego frames is not a multiple of ego.frames_per_frame={frames_per_frame}")
    if k not in (1, tokens_per_frame):
        raise ValueError(f"ego features carry {k} tokens per frame; expected 1 or {tokens_per_frame}")
    pooled = tokens.view(count // frames_per_frame, frames_per_frame, k, width).mean(dim=1)  # [T, k, C]
    return pooled.expand(-1, tokens_per_frame, -1)
