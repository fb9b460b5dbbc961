"""A VideoLLM-online v1+ checkpoint in the exact release layout, tiny and random, on the real Llama-3 tokenizer.

A Llama with Llama-3's vocabulary (tiny widths), a peft LoRA adapter over it as videollm-online's
training saves it (the v1+ target regex, ``lm_head`` included, so ``lm_head.base_layer.weight``
is in the file; ``connector`` in ``modules_to_save``) inside a Trainer output directory (with
``training_args.bin``, which nothing may unpickle: here it is not even a pickle).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, SiglipVisionConfig, SiglipVisionModel

from llama3_tokenizer import save_llama3_tokenizer

R, ALPHA = 4, 8
RELEASE_R, RELEASE_ALPHA = 128, 256  # videollm-online's lora_r / lora_alpha
V1PLUS_TARGETS = "model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)|lm_head$"
PROJS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
LLM_SIZES = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8),
}
SIGLIP_SIZES = {  # "8b": SigLIP-L/16-384's vision tower
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
    "8b": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=384, patch_size=16),
}
NOT_A_PICKLE = b"training_args.bin: never unpickled\n"


def write_llama3_base(root: Path, interval_id: int, interval_gain: float, eos_gain: float, size: str = "tiny",
                      device: str = "cpu", dtype: torch.dtype = torch.float32, tokenizer_dir: Path | None = None) -> Path:
    """``build_llama3_base`` saved to ``root/llm`` (with the tokenizer); returns that directory."""
    build_llama3_base(root, interval_id, interval_gain, eos_gain, size, device, dtype, tokenizer_dir).save_pretrained(root / "llm")
    return root / "llm"


def build_llama3_base(root: Path, interval_id: int, interval_gain: float, eos_gain: float, size: str = "tiny",
                      device: str = "cpu", dtype: torch.dtype = torch.float32,
                      tokenizer_dir: Path | None = None) -> LlamaForCausalLM:
    """A random Llama-3-vocabulary Llama (the tokenizer saved to ``root/llm`` unless ``tokenizer_dir`` is
    given); the interval and EOS rows of lm_head are tilted so that the per-frame decision and the answer
    lengths vary (random weights alone almost never say ',' or stop)."""
    tokenizer_dir = tokenizer_dir or save_llama3_tokenizer(root / "llm")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **LLM_SIZES[size],
    )
    with torch.device(device):
        llm = LlamaForCausalLM(config).to(dtype)
    width = config.hidden_size
    with torch.no_grad():
        row = llm.lm_head.weight
        row[interval_id] = (interval_gain * torch.ones(width) / width ** 0.5).to(row)
        eos_direction = torch.randn(width, generator=torch.Generator().manual_seed(5))
        row[tokenizer.eos_token_id] = (eos_gain * eos_direction / eos_direction.norm()).to(row)
    return llm


def write_siglip(path: Path, size: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> Path:
    with torch.device(device):
        SiglipVisionModel(SiglipVisionConfig(**SIGLIP_SIZES[size])).to(dtype).save_pretrained(path)
    return path


def write_release_adapter(path: Path, llm: LlamaForCausalLM, vision_width: int, seed: int = 1,
                          rank: int = R, alpha: int = ALPHA, dtype: torch.dtype = torch.float32,
                          trainer_dir: bool = True) -> dict:
    """adapter_config.json + adapter_model.safetensors with the public checkpoint's names; ``trainer_dir``:
    as the Trainer leaves it (peft's copy of the base ``lm_head`` in the file, ``training_args.bin`` beside)."""
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct",
        "r": rank, "lora_alpha": alpha, "lora_dropout": 0.05, "target_modules": V1PLUS_TARGETS,
        "modules_to_save": ["connector"], "bias": "none", "inference_mode": True, "fan_in_fan_out": False,
    }))
    if trainer_dir:
        (path / "training_args.bin").write_bytes(NOT_A_PICKLE)
    g = torch.Generator().manual_seed(seed)
    width = llm.config.hidden_size
    linears = {f"model.layers.{i}.{p}": llm.get_submodule(f"model.layers.{i}.{p}")
               for i in range(llm.config.num_hidden_layers) for p in PROJS}
    linears["lm_head"] = llm.lm_head
    tensors = {}
    for name, lin in linears.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = torch.randn(rank, lin.in_features, generator=g) * 0.1
        tensors[f"base_model.model.{name}.lora_B.weight"] = torch.randn(lin.out_features, rank, generator=g) * 0.01
    if trainer_dir:
        tensors["base_model.model.lm_head.base_layer.weight"] = llm.lm_head.weight.detach().float().cpu().clone()
    tensors["base_model.model.connector.0.weight"] = torch.randn(width, vision_width, generator=g) * 0.2
    tensors["base_model.model.connector.0.bias"] = torch.randn(width, generator=g) * 0.1
    tensors["base_model.model.connector.2.weight"] = torch.randn(width, width, generator=g) * 0.2
    tensors["base_model.model.connector.2.bias"] = torch.randn(width, generator=g) * 0.1
    tensors = {k: v.to(dtype).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    return tensors
