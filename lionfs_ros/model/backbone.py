"""The causal LM backbone: build from a local dir, a GGUF file or an inline config; LoRA through peft.

Weights load from safetensors only (``use_safetensors=True``), offline, with no remote code.
LoRA layers are injected in place (``peft.inject_adapter_in_model``), so the backbone stays a
plain HF causal LM whose ``q_proj`` etc. carry ``lora_A``/``lora_B``; the adapter is saved and
loaded in peft's own file layout (see ``checkpoint.py``).
"""
from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, inject_adapter_in_model
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from .configuration_lionfs import LLMConfig, LoraSettings

GGUF_SUFFIX = ".gguf"
ADAPTER_NAME = "default"
_CONFIG_KEYS_NOT_INLINED = ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype")


def is_gguf(path: str | None) -> bool:
    return path is not None and str(path).endswith(GGUF_SUFFIX)


def load_llm(cfg: LLMConfig, dtype: torch.dtype) -> PreTrainedModel:
    """Build the backbone named by ``cfg`` (no LoRA yet)."""
    if cfg.config is not None:
        hf_config = AutoConfig.for_model(**cfg.config)
        hf_config._attn_implementation = cfg.attn_implementation
        return AutoModelForCausalLM.from_config(hf_config, dtype=dtype, attn_implementation=cfg.attn_implementation)
    path = Path(cfg.path)
    if not path.exists():
        raise FileNotFoundError(f"llm.path does not exist: {path}")
    if is_gguf(cfg.path):
        from .gguf_backbone import load_gguf_causal_lm

        return load_gguf_causal_lm(path, dtype=dtype, attn_implementation=cfg.attn_implementation)
    model, info = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, attn_implementation=cfg.attn_implementation, use_safetensors=True,
        local_files_only=True, output_loading_info=True,
    )
    if info["missing_keys"]:
        raise ValueError(f"LLM at {path} lacks weights: {sorted(info['missing_keys'])[:8]} ...")
    return model


def llm_config_to_inline(llm: PreTrainedModel) -> dict:
    """The backbone's HF config as a dict for ``AutoConfig.for_model`` (saved models use it)."""
    data = llm.config.to_dict()
    for key in _CONFIG_KEYS_NOT_INLINED:
        data.pop(key, None)
    return data


def lora_config(settings: LoraSettings) -> LoraConfig:
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        bias="none",
    )


def apply_lora(llm: PreTrainedModel, settings: LoraSettings) -> PreTrainedModel:
    """Inject LoRA layers in place; only they are trainable in the backbone afterwards."""
    llm = inject_adapter_in_model(lora_config(settings), llm, adapter_name=ADAPTER_NAME)
    for name, param in llm.named_parameters():
        param.requires_grad_(is_lora_key(name))
    return llm


def is_lora_key(name: str) -> bool:
    return ".lora_" in name


def has_lora(llm: PreTrainedModel) -> bool:
    return any(is_lora_key(name) for name, _ in llm.named_parameters())


def merge_lora(llm: PreTrainedModel) -> PreTrainedModel:
    """Fold the LoRA update into the base weights and remove the LoRA layers (faster inference)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(llm.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(llm.get_submodule(parent_name) if parent_name else llm, child, module.get_base_layer())
    if hasattr(llm, "peft_config"):
        del llm.peft_config
    return llm
