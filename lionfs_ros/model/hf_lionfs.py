"""The model directory as transformers sees it: ``model_type: lionfs``, registered with the Auto classes.

``import lionfs_ros.model`` registers ``LionFSPretrainedConfig`` with ``AutoConfig`` and
``LionFSForVideoStreaming`` with ``AutoModel`` (no ``trust_remote_code``: the classes are ours,
imported, never downloaded). ``AutoModel.from_pretrained(dir_or_hub_id)`` loads through the
same safetensors-only loader as ``LionFSModel.from_pretrained``; ``.lionfs`` is that model.
"""
from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from .checkpoint import FORMAT_KEY, FORMAT_VERSION, MODEL_TYPE
from .configuration_lionfs import _NESTED, LionFSConfig
from .modeling_lionfs import LionFSModel


class LionFSPretrainedConfig(PretrainedConfig):
    """``config.json`` of a LionFS model directory: the ``LionFSConfig`` sections, as transformers reads them."""

    model_type = MODEL_TYPE

    def __init__(self, sections: dict | None = None, **kwargs):
        kwargs.pop(FORMAT_KEY, None)
        given = {name: kwargs.pop(name) for name in list(kwargs) if name in _NESTED}
        self.sections = {**(sections or {}), **given}
        super().__init__(**kwargs)

    def to_lionfs_config(self) -> LionFSConfig:
        return LionFSConfig.from_dict(dict(self.sections))

    def to_dict(self) -> dict:
        data = super().to_dict()
        data.pop("sections", None)
        return {**data, FORMAT_KEY: FORMAT_VERSION, **self.sections}


class LionFSForVideoStreaming(PreTrainedModel):
    """A LionFS model behind transformers' ``PreTrainedModel`` interface; ``.lionfs`` is the ``LionFSModel``."""

    config_class = LionFSPretrainedConfig
    base_model_prefix = "lionfs"

    def __init__(self, config: LionFSPretrainedConfig, lionfs: LionFSModel | None = None):
        super().__init__(config)
        self.lionfs = lionfs if lionfs is not None else LionFSModel.from_config(config.to_lionfs_config())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, device=None, dtype=None, torch_dtype=None, **kwargs):
        """A model directory or hub id; ``device`` and ``dtype`` as ``LionFSModel.from_pretrained`` (other
        loading options of transformers do not apply: the directory has its own layout)."""
        dtype = dtype if dtype is not None else torch_dtype
        dtype = None if dtype == "auto" else (getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        model = LionFSModel.from_pretrained(str(pretrained_model_name_or_path), device=device, dtype=dtype)
        return cls(LionFSPretrainedConfig(sections=model.config.to_dict()), model)

    def save_pretrained(self, save_directory, **kwargs) -> None:
        self.lionfs.save_pretrained(save_directory)

    def forward(self, *args, **kwargs):
        return self.lionfs(*args, **kwargs)


def register() -> None:
    AutoConfig.register(MODEL_TYPE, LionFSPretrainedConfig, exist_ok=True)
    AutoModel.register(LionFSPretrainedConfig, LionFSForVideoStreaming, exist_ok=True)
