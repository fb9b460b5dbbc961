"""Load the public VideoLLM-online v1+ checkpoint layout as a single-encoder LionFS model.

The layout: a peft LoRA adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``)
trained on Llama-3-8B-Instruct, whose ``modules_to_save`` include the ``connector`` (a
Linear-GELU-Linear MLP from SigLIP width to LLM width). Keys are
``base_model.model.model.layers.<i>.<proj>.lora_A.weight`` / ``lora_B.weight`` (and ``lm_head``)
plus ``base_model.model.connector.{0,2}.{weight,bias}``. Vision: SigLIP-L/16-384, a frame is the
SigLIP pooler output + the 24x24 patch grid pooled to 3x3 (10 tokens); ``,`` is the interval
token; the stream text format is VideoLLM-online's (our ``StreamConfig`` defaults).

The base LLM and SigLIP are read from local directories; nothing is downloaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .backbone import is_lora_key
from .checkpoint import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    PEFT_PREFIX,
    CheckpointError,
    load_lora_adapter,
    load_weights_strict,
    read_safetensors,
    refuse_pickles,
    strip_prefix,
)
from .configuration_lionfs import (
    AggregationConfig,
    DroppingConfig,
    EgoConfig,
    LionFSConfig,
    LLMConfig,
    LoraSettings,
    StreamConfig,
    VisionConfig,
)
from .modeling_lionfs import LionFSModel, default_dtype

CONNECTOR_PREFIX = "connector."
V1PLUS_POOL_GRID = 3
SIGLIP_MEAN_STD = (0.5, 0.5, 0.5)
UNSUPPORTED_LORA_FLAGS = ("use_dora", "use_rslora")


def read_adapter_config(adapter_dir: Path) -> dict:
    file = adapter_dir / ADAPTER_CONFIG_NAME
    if not file.is_file():
        raise CheckpointError(f"{file} not found: not a peft adapter directory")
    try:
        data = json.loads(file.read_text())
    except ValueError as err:
        raise CheckpointError(f"{file} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or data.get("peft_type") != "LORA":
        raise CheckpointError(f"{file}: expected a LoRA adapter (peft_type 'LORA')")
    for flag in UNSUPPORTED_LORA_FLAGS:
        if data.get(flag):
            raise CheckpointError(f"{file}: {flag} adapters are not supported")
    if data.get("rank_pattern") or data.get("alpha_pattern"):
        raise CheckpointError(f"{file}: per-module rank/alpha patterns are not supported")
    return data


def videollm_online_config(adapter: dict, llm_path: str, vision_path: str) -> LionFSConfig:
    """VideoLLM-online v1+ as a LionFS config: one SigLIP encoder, no aggregation, no dropping."""
    return LionFSConfig(
        vision=VisionConfig(
            path=str(vision_path), global_token="pooler", pool_grid=V1PLUS_POOL_GRID,
            image_mean=SIGLIP_MEAN_STD, image_std=SIGLIP_MEAN_STD, resample="bicubic",
        ),
        ego=EgoConfig(source="none"),
        aggregation=AggregationConfig(mode="none"),
        dropping=DroppingConfig(mode="none"),
        llm=LLMConfig(
            path=str(llm_path),
            lora=LoraSettings(
                enabled=True, r=int(adapter["r"]), alpha=int(adapter["lora_alpha"]),
                dropout=float(adapter.get("lora_dropout", 0.0)), target_modules=adapter["target_modules"],
            ),
        ),
        stream=StreamConfig(),
    ).validate()


def load_videollm_online(
    adapter_dir: str | Path,
    llm_path: str | Path,
    vision_path: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> LionFSModel:
    """A VideoLLM-online v1+ adapter + its base Llama-3 dir + a SigLIP dir -> ``LionFSModel``."""
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise FileNotFoundError(f"adapter directory not found: {adapter_dir}")
    refuse_pickles(adapter_dir)
    config = videollm_online_config(read_adapter_config(adapter_dir), str(llm_path), str(vision_path))
    model = LionFSModel.from_config(config, device="cpu", dtype=torch.float32)
    weights_file = adapter_dir / ADAPTER_WEIGHTS_NAME
    state = strip_prefix(read_safetensors(weights_file), PEFT_PREFIX, weights_file)
    lora = {k: v for k, v in state.items() if is_lora_key(k)}
    connector = {k[len(CONNECTOR_PREFIX):]: v for k, v in state.items() if k.startswith(CONNECTOR_PREFIX)}
    unknown = sorted(set(state) - set(lora) - {CONNECTOR_PREFIX + k for k in connector})
    if unknown:
        raise CheckpointError(f"{weights_file} has keys that are neither LoRA nor connector: {unknown[:8]}")
    load_weights_strict(model.connector, connector, weights_file, skip=lambda key: False)
    load_lora_adapter(model.llm, lora, weights_file)
    return model.to(device=device or "cpu", dtype=dtype or default_dtype(device))
