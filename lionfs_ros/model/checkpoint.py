"""Model directories: ``config.json`` + ``model.safetensors`` + ``tokenizer/`` (+ ``adapter/``).

- ``config.json``: ``model_type: lionfs`` and the ``LionFSConfig``, every backbone given inline
  (its HF config dict), so the directory needs nothing else to rebuild the architecture; or, for
  an adapter-only directory (a LoRA run on a named base, a converted VideoLLM-online release), the
  base LLM / vision tower named by ``path`` (a local path or a hub id).
- ``model.safetensors``: every weight except LoRA's (tied weights stored once), minus the weights
  of the bases an adapter-only directory names.
- ``adapter/adapter_config.json`` + ``adapter/adapter_model.safetensors``: the LoRA adapter in
  peft's layout (keys ``base_model.model.<module>.lora_A.weight``), loadable by peft onto the
  backbone alone.

Loading reads safetensors only: a directory holding pickle files is refused, and so is any key
the model does not have or any weight it lacks.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import save_file

from .backbone import has_lora, is_lora_key, llm_config_to_inline, lora_config
from .configuration_lionfs import ConfigError, LionFSConfig
from .tokenization import load_tokenizer
from .vision import vision_config_to_inline

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
ADAPTER_DIR = "adapter"
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
FORMAT_KEY = "lionfs_format"
FORMAT_VERSION = 1
MODEL_TYPE = "lionfs"
BASE_PARTS = (("llm.", "llm"), ("vision.tower.", "vision"), ("ego.tower.", "ego"))  # state prefix, config part
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class CheckpointError(ValueError):
    """A model directory is missing, malformed, unsafe or does not match the model."""


def inline_config(model) -> LionFSConfig:
    """The model's config with every backbone inlined (paths dropped): what a model directory stores."""
    cfg = copy.deepcopy(model.config)
    cfg.llm.path, cfg.llm.tokenizer_path, cfg.llm.config = None, None, llm_config_to_inline(model.llm)
    cfg.vision.path, cfg.vision.config = None, vision_config_to_inline(model.vision.tower)
    cfg.vision.image_size = model.vision.image_size
    if model.ego is not None:
        cfg.ego.tower.path, cfg.ego.tower.config = None, vision_config_to_inline(model.ego.tower)
        cfg.ego.tower.image_size = model.ego.image_size
    return cfg.validate()


def _unique_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop keys whose tensor shares storage with an earlier key (tied embeddings)."""
    seen, out = set(), {}
    for key, tensor in state.items():
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if ident not in seen:
            seen.add(ident)
            out[key] = tensor.detach().contiguous().cpu()
    return out


def write_config(config: LionFSConfig, path: Path) -> None:
    data = {"model_type": MODEL_TYPE, FORMAT_KEY: FORMAT_VERSION, **config.to_dict()}
    (path / CONFIG_NAME).write_text(json.dumps(data, indent=2) + "\n")


def named_bases(config: LionFSConfig) -> list[str]:
    """State-dict prefixes of the parts an adapter-only directory takes from their named (frozen) bases."""
    paths = {"llm": config.llm.path if config.llm.lora.enabled else None,
             "vision": config.vision.path if not config.vision.trainable else None,
             "ego": config.ego.tower.path if config.ego.source == "tower" and not config.ego.tower.trainable else None}
    return [prefix for prefix, part in BASE_PARTS if paths[part]]


def adapter_only_config(model) -> LionFSConfig:
    """The model's config keeping the named bases (paths or hub ids) and inlining the rest."""
    cfg, full = copy.deepcopy(model.config), inline_config(model)
    bases = named_bases(cfg)
    if "llm." not in bases:
        cfg.llm = full.llm
    if "vision.tower." not in bases:
        cfg.vision = full.vision
    if cfg.ego.source == "tower" and "ego.tower." not in bases:
        cfg.ego = full.ego
    return cfg.validate()


def save_model(model, path: str | Path, adapter_only: bool | None = None) -> None:
    """``adapter_only`` (default: a LoRA model on a named base LLM): store the adapter and the trained
    parts (connectors, routers), and name the bases (``base_model_name_or_path`` in the adapter)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if adapter_only is None:
        adapter_only = "llm." in named_bases(model.config)
    if adapter_only and "llm." not in named_bases(model.config):
        raise CheckpointError("adapter_only needs a LoRA model whose llm.path names its base")
    config = adapter_only_config(model) if adapter_only else inline_config(model)
    write_config(config, path)
    skipped = named_bases(config) if adapter_only else []
    state = {k: v for k, v in model.state_dict().items()
             if not is_lora_key(k) and not any(k.startswith(p) for p in skipped)}
    save_file(_unique_state(state), str(path / WEIGHTS_NAME), metadata={"format": "pt"})
    model.tokenizer.save_pretrained(path / TOKENIZER_DIR)
    if has_lora(model.llm):
        adapter = path / ADAPTER_DIR
        adapter.mkdir(exist_ok=True)
        settings = lora_config(model.config.llm.lora)
        settings.base_model_name_or_path = model.config.llm.path
        settings.save_pretrained(adapter)
        lora = {
            PEFT_PREFIX + k: v.detach().contiguous().cpu()
            for k, v in get_peft_model_state_dict(model.llm, save_embedding_layers=False).items()
        }
        save_file(lora, str(adapter / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})


def read_config(path: Path) -> LionFSConfig:
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise CheckpointError(f"{config_file} not found: not a LionFS model directory")
    try:
        data = json.loads(config_file.read_text())
    except ValueError as err:
        raise CheckpointError(f"{config_file} is not valid JSON: {err}") from err
    if isinstance(data, dict) and data.get("model_type", MODEL_TYPE) == MODEL_TYPE:
        data.pop("model_type", None)
    if not isinstance(data, dict) or data.pop(FORMAT_KEY, None) != FORMAT_VERSION:
        raise CheckpointError(f"{config_file} is not a LionFS config (missing {FORMAT_KEY}: {FORMAT_VERSION})")
    try:
        return LionFSConfig.from_dict(data)
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{config_file}: {err}") from err


def refuse_pickles(path: Path) -> None:
    found = sorted(p.name for p in path.rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if found:
        raise CheckpointError(f"{path} holds pickle files {found}: weights load from safetensors only")


def read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise CheckpointError(f"{file} not found")
    try:
        with safe_open(str(file), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{file} is not a readable safetensors file: {err}") from err


def load_weights_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, skip=is_lora_key,
                        optional=lambda key: False) -> None:
    """Load ``state`` into ``module``: unknown keys and missing weights (other than tied aliases and
    ``optional`` ones, which keep their loaded values) are errors."""
    expected = {k: v for k, v in module.state_dict().items() if not skip(k)}
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise CheckpointError(f"{source} has keys this model does not have: {unknown[:8]}{' ...' if len(unknown) > 8 else ''}")
    stored = _unique_state(expected)
    missing = sorted(k for k in stored if k not in state)
    aliases = {k for k in expected if k not in stored}
    for key in aliases:
        ptr = expected[key].untyped_storage().data_ptr()
        if not any(expected[k].untyped_storage().data_ptr() == ptr for k in state):
            missing.append(key)
    missing = [k for k in missing if not optional(k)]
    if missing:
        raise CheckpointError(f"{source} lacks weights: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    bad = [k for k, v in state.items() if v.shape != expected[k].shape]
    if bad:
        raise CheckpointError(f"{source}: shape mismatch for {bad[:8]}")
    module.load_state_dict(state, strict=False)


def load_model_weights(model, file: Path) -> None:
    """A model directory's ``model.safetensors`` into ``model``; the weights of named bases may be absent (adapter-only)."""
    bases = named_bases(model.config)
    load_weights_strict(model, read_safetensors(file), file, optional=lambda key: any(key.startswith(p) for p in bases))


def load_lora_adapter(llm: torch.nn.Module, lora_state: dict[str, torch.Tensor], source: Path) -> None:
    """Set LoRA weights (peft keys, prefix already stripped) into an injected backbone; every LoRA weight must be given."""
    result = set_peft_model_state_dict(llm, lora_state)
    if result.unexpected_keys:
        raise CheckpointError(f"{source} has LoRA keys the backbone does not have: {sorted(result.unexpected_keys)[:8]}")
    missing = sorted(k for k in result.missing_keys if is_lora_key(k))
    if missing:
        raise CheckpointError(f"{source} lacks LoRA weights: {missing[:8]}")


def strip_prefix(state: dict[str, torch.Tensor], prefix: str, source: Path) -> dict[str, torch.Tensor]:
    bad = [k for k in state if not k.startswith(prefix)]
    if bad:
        raise CheckpointError(f"{source}: keys outside '{prefix}': {bad[:8]}")
    return {k[len(prefix):]: v for k, v in state.items()}


def load_model(cls, path: str | Path, device=None, dtype=None):
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"LionFS model directory not found: {path}")
    refuse_pickles(path)
    config = read_config(path)
    tokenizer_dir = path / TOKENIZER_DIR
    if not tokenizer_dir.is_dir():
        raise CheckpointError(f"{tokenizer_dir} not found")
    from .modeling_lionfs import default_dtype

    # Built in the target dtype (weights are cast once, as they load): an 8B base is never held in float32.
    dtype = dtype or default_dtype(device)
    model = cls.from_config(config, tokenizer=load_tokenizer(tokenizer_dir), device="cpu", dtype=dtype)
    load_model_weights(model, path / WEIGHTS_NAME)
    adapter_file = path / ADAPTER_DIR / ADAPTER_WEIGHTS_NAME
    if config.llm.lora.enabled:
        lora = strip_prefix(read_safetensors(adapter_file), PEFT_PREFIX, adapter_file)
        load_lora_adapter(model.llm, lora, adapter_file)
    elif adapter_file.exists():
        raise CheckpointError(f"{adapter_file} exists but config.json says llm.lora.enabled is false")
    return model.to(device=device or "cpu", dtype=dtype)
