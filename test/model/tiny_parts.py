"""Helpers for the model tests: tiny real HF parts on disk and LionFS configs over them."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, SiglipConfig, SiglipModel

from lionfs_ros.model import LionFSConfig
from lionfs_ros.model.tokenization import train_byte_bpe_tokenizer

CORPUS = [
    "A multimodal AI assistant is helping users with some activities.",
    " Below is their conversation, interleaved with the list of video frames received by the assistant.",
    "User: what is the person doing? Assistant: The person cuts a red tomato on the board.",
    "Assistant: You pick up the knife. You open the fridge, then close it. [ ] , .",
    "the cat sat on the mat and the dog ran in the park with a ball",
]
TINY_VOCAB = 360
IMAGE_SIZE = 32
PATCH = 8
LLM_WIDTH = 64
LLM_LAYERS = 4


def write_tiny_parts(root: Path) -> dict:
    """Paths of a tiny Llama (+ tokenizer), a tiny full SigLIP and a tiny CLIP vision tower."""
    torch.manual_seed(0)
    tokenizer = train_byte_bpe_tokenizer(CORPUS * 4, TINY_VOCAB)
    llm_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=LLM_WIDTH, intermediate_size=2 * LLM_WIDTH, num_hidden_layers=LLM_LAYERS,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(llm_config).save_pretrained(root / "llm")
    tokenizer.save_pretrained(root / "llm")
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=PATCH)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)
    SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).save_pretrained(root / "siglip")
    CLIPVisionModel(CLIPVisionConfig(**vision)).save_pretrained(root / "clip")
    return {"llm": str(root / "llm"), "siglip": str(root / "siglip"), "clip": str(root / "clip")}


def make_config(dirs: dict, *, fused: bool = True, beta: float | None = None, attn: str = "sdpa", lora: bool = False) -> LionFSConfig:
    data = {
        "vision": {"path": dirs["siglip"], "global_token": "pooler"},
        "ego": {"source": "none"},
        "aggregation": {"mode": "none"},
        "dropping": {"mode": "none"},
        "llm": {"path": dirs["llm"], "attn_implementation": attn, "lora": {"enabled": lora, "r": 4, "alpha": 8}},
    }
    if fused:
        data["ego"] = {"source": "tower", "frames_per_frame": 2, "tower": {"path": dirs["clip"], "global_token": "cls"}}
        data["aggregation"] = {"mode": "router"}
    if beta is not None:
        data["dropping"] = {"mode": "mod", "beta": beta, "layers": "interleaved"}
    return LionFSConfig.from_dict(copy.deepcopy(data))


def random_frames(count: int, seed: int, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
