"""VideoLLM-online v1+ checkpoints as LionFS models: load them, or convert them to a model directory.

The release layout (``chenjoya/videollm-online-8b-v1plus``): a peft LoRA adapter directory
(``adapter_config.json`` + ``adapter_model.safetensors``) trained on Llama-3-8B-Instruct, with
``modules_to_save = ["connector"]`` (a Linear-GELU-Linear MLP from SigLIP width to LLM width).
Keys: ``base_model.model.<module>.lora_A.weight`` / ``lora_B.weight`` for every targeted linear
(``lm_head`` included, so peft also writes ``base_model.model.lm_head.base_layer.weight``: the
base ``lm_head`` as trained) and ``base_model.model.connector.{0,2}.{weight,bias}``. A Trainer
output directory holds the same files plus Trainer state (``training_args.bin`` and friends),
which is ignored and never unpickled.

The model: SigLIP-L/16-384, a frame is the SigLIP pooler output + the 24x24 patch grid pooled to
3x3 (10 tokens), frames letterboxed to a square; ``,`` is the interval token; the stream format
and its tokenization, the way answers enter the context, the question timing and the answer
length are those of the reference demo (``StreamConfig`` ``tokenize: rendered``, ``commit:
generated``, ``question_timing: before_next_frame``, ``max_new_tokens: 100``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import torch
from safetensors.torch import save_file

from .backbone import is_lora_key, lora_config
from .checkpoint import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_DIR,
    ADAPTER_WEIGHTS_NAME,
    PEFT_PREFIX,
    PICKLE_SUFFIXES,
    TOKENIZER_DIR,
    WEIGHTS_NAME,
    CheckpointError,
    load_lora_adapter,
    load_weights_strict,
    read_safetensors,
    strip_prefix,
    write_config,
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
from .hub import is_hub_id, resolve
from .modeling_lionfs import LionFSModel, default_dtype
from .tokenization import load_tokenizer, prepare_tokenizer

CONNECTOR_PREFIX = "connector."
BASE_LAYER_SUFFIX = ".base_layer.weight"  # peft's copy of a targeted module's base weight (lm_head)
V1PLUS_POOL_GRID = 3
SIGLIP_MEAN_STD = (0.5, 0.5, 0.5)
DEMO_MAX_NEW_TOKENS = 100  # the reference demo's answer buffer
UNSUPPORTED_LORA_FLAGS = ("use_dora", "use_rslora")
TRAINER_STATE_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth")


@dataclass
class ReleaseWeights:
    adapter: dict  # adapter_config.json
    lora: dict[str, torch.Tensor]  # peft keys without the prefix, e.g. "lm_head.lora_A.weight"
    connector: dict[str, torch.Tensor]  # "0.weight", ...
    base: dict[str, torch.Tensor]  # base weights the adapter carries, keyed as in the LLM, e.g. "lm_head.base_layer.weight"


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


def refuse_weight_pickles(adapter_dir: Path) -> None:
    """Pickled weights are refused; a Trainer's own state files are ignored (never opened)."""
    found = sorted(
        p.name for p in adapter_dir.iterdir()
        if p.suffix in PICKLE_SUFFIXES and not any(fnmatch(p.name, pattern) for pattern in TRAINER_STATE_FILES)
    )
    if found:
        raise CheckpointError(f"{adapter_dir} holds pickle files {found}: weights load from safetensors only")


def read_release(adapter_dir: str | Path) -> ReleaseWeights:
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise FileNotFoundError(f"adapter directory not found: {adapter_dir}")
    refuse_weight_pickles(adapter_dir)
    adapter = read_adapter_config(adapter_dir)
    weights_file = adapter_dir / ADAPTER_WEIGHTS_NAME
    state = strip_prefix(read_safetensors(weights_file), PEFT_PREFIX, weights_file)
    lora = {k: v for k, v in state.items() if is_lora_key(k)}
    connector = {k[len(CONNECTOR_PREFIX):]: v for k, v in state.items() if k.startswith(CONNECTOR_PREFIX)}
    base = {k: v for k, v in state.items() if k.endswith(BASE_LAYER_SUFFIX)}
    unknown = sorted(set(state) - set(lora) - set(base) - {CONNECTOR_PREFIX + k for k in connector})
    if unknown:
        raise CheckpointError(f"{weights_file} has keys that are neither LoRA, base layer nor connector: {unknown[:8]}")
    return ReleaseWeights(adapter, lora, connector, base)


def videollm_online_config(adapter: dict, llm_path: str, vision_path: str) -> LionFSConfig:
    """VideoLLM-online v1+ as a LionFS config: one SigLIP encoder, no aggregation, no dropping, the demo's stream."""
    return LionFSConfig(
        vision=VisionConfig(
            path=str(vision_path), global_token="pooler", pool_grid=V1PLUS_POOL_GRID,
            image_mean=SIGLIP_MEAN_STD, image_std=SIGLIP_MEAN_STD, resample="bicubic", resize="letterbox",
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
        stream=StreamConfig(tokenize="rendered", commit="generated", question_timing="before_next_frame",
                            max_new_tokens=DEMO_MAX_NEW_TOKENS),
    ).validate()


def load_videollm_online(
    adapter_dir: str | Path,
    llm_path: str | Path,
    vision_path: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> LionFSModel:
    """A VideoLLM-online v1+ adapter + its base Llama-3 + a SigLIP (dirs or hub ids) -> ``LionFSModel``."""
    release = read_release(adapter_dir)
    source = Path(adapter_dir) / ADAPTER_WEIGHTS_NAME
    config = videollm_online_config(release.adapter, str(llm_path), str(vision_path))
    model = LionFSModel.from_config(config, device="cpu", dtype=torch.float32)
    load_weights_strict(model.connector, release.connector, source, skip=lambda key: False)
    if release.base:
        load_weights_strict(model.llm, release.base, source, optional=lambda key: True)
    load_lora_adapter(model.llm, release.lora, source)
    return model.to(device=device or "cpu", dtype=dtype or default_dtype(device))


def convert_videollm_online(adapter_dir: str | Path, llm: str, vision: str, out: str | Path) -> Path:
    """Write a LionFS model directory for a release adapter, without loading the base weights.

    The directory is adapter-only: ``config.json`` names the base LLM and SigLIP (as given: local
    paths or hub ids), ``adapter/`` holds the LoRA in peft's layout, ``model.safetensors`` the
    connector and any base layer the adapter carries, ``tokenizer/`` the base tokenizer with the
    frame placeholder."""
    release = read_release(adapter_dir)
    for name, where in (("llm", llm), ("vision", vision)):
        if not resolve(where).exists():
            raise FileNotFoundError(f"--{name} {where} not found")
    llm, vision = (where if is_hub_id(where) else str(Path(where).expanduser().resolve()) for where in (llm, vision))
    config = videollm_online_config(release.adapter, llm, vision)
    tokenizer = load_tokenizer(resolve(llm))
    prepare_tokenizer(tokenizer, config.stream)
    out = Path(out)
    (out / ADAPTER_DIR).mkdir(parents=True, exist_ok=True)
    write_config(config, out)
    tokenizer.save_pretrained(out / TOKENIZER_DIR)
    state = {f"{CONNECTOR_PREFIX}{k}": v for k, v in release.connector.items()}
    state.update({f"llm.{k}": v for k, v in release.base.items()})
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    lora = lora_config(config.llm.lora)
    lora.base_model_name_or_path = llm
    lora.save_pretrained(out / ADAPTER_DIR)
    save_file({PEFT_PREFIX + k: v.contiguous() for k, v in release.lora.items()},
              str(out / ADAPTER_DIR / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
    return out
