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
from transformers import LlamaConfig, LlamaForCausalLM

from llama3_tokenizer import save_llama3_tokenizer

R, ALPHA = 4, 8
V1PLUS_TARGETS = "model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)|lm_head$"
PROJS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
WIDTH, LAYERS = 32, 2
NOT_A_PICKLE = b"training_args.bin: never unpickled\n"


def write_llama3_base(root: Path, interval_id: int, interval_gain: float, eos_gain: float) -> Path:
    """A random Llama-3-vocabulary Llama; the interval and EOS rows of lm_head are tilted so that the
    per-frame decision and the answer lengths vary (random weights alone almost never say ',' or stop)."""
    tokenizer_dir = save_llama3_tokenizer(root / "llm")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=LAYERS,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192, rope_theta=500000.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    llm = LlamaForCausalLM(config)
    with torch.no_grad():
        llm.lm_head.weight[interval_id] = interval_gain * torch.ones(WIDTH) / WIDTH ** 0.5
        eos_direction = torch.randn(WIDTH, generator=torch.Generator().manual_seed(5))
        llm.lm_head.weight[tokenizer.eos_token_id] = eos_gain * eos_direction / eos_direction.norm()
    llm.save_pretrained(root / "llm")
    return root / "llm"


def write_release_adapter(path: Path, llm: LlamaForCausalLM, vision_width: int, seed: int = 1) -> dict:
    """A Trainer output dir: adapter_config.json + adapter_model.safetensors (+ training_args.bin)."""
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct",
        "r": R, "lora_alpha": ALPHA, "lora_dropout": 0.05, "target_modules": V1PLUS_TARGETS,
        "modules_to_save": ["connector"], "bias": "none", "inference_mode": True, "fan_in_fan_out": False,
    }))
    (path / "training_args.bin").write_bytes(NOT_A_PICKLE)
    g = torch.Generator().manual_seed(seed)
    width = llm.config.hidden_size
    linears = {f"model.layers.{i}.{p}": llm.get_submodule(f"model.layers.{i}.{p}")
               for i in range(llm.config.num_hidden_layers) for p in PROJS}
    linears["lm_head"] = llm.lm_head
    tensors = {}
    for name, lin in linears.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = torch.randn(R, lin.in_features, generator=g) * 0.1
        tensors[f"base_model.model.{name}.lora_B.weight"] = torch.randn(lin.out_features, R, generator=g) * 0.01
    tensors["base_model.model.lm_head.base_layer.weight"] = llm.lm_head.weight.detach().clone()
    tensors["base_model.model.connector.0.weight"] = torch.randn(width, vision_width, generator=g) * 0.2
    tensors["base_model.model.connector.0.bias"] = torch.randn(width, generator=g) * 0.1
    tensors["base_model.model.connector.2.weight"] = torch.randn(width, width, generator=g) * 0.2
    tensors["base_model.model.connector.2.bias"] = torch.randn(width, generator=g) * 0.1
    save_file(tensors, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    return tensors
