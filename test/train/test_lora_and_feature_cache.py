"""LoRA on a pretrained backbone (peft) through training and resume; frozen towers' features cached once."""
import copy

import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from lionfs_ros.model import LionFSModel
from lionfs_ros.model.tokenization import train_byte_bpe_tokenizer
from lionfs_ros.train.config import TrainConfig
from lionfs_ros.train.run import run_training

from train_helpers import TINY_MODEL, tiny_config_dict

LORA_RANK = 4


def pretrained_llm(root) -> str:
    """A small saved Llama and its tokenizer: the stand-in for a pretrained backbone directory."""
    torch.manual_seed(0)
    tokenizer = train_byte_bpe_tokenizer(["You pick up the red cup.", "Assistant: User: [ ] , Narrate what I do."], 300)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048))
    llm.save_pretrained(root / "llm")
    tokenizer.save_pretrained(root / "llm")
    return str(root / "llm")


def test_lora_training_saves_an_adapter_and_resumes(tmp_path, train_dir):
    model = copy.deepcopy(TINY_MODEL)
    model["llm"] = {"path": pretrained_llm(tmp_path), "lora": {"enabled": True, "r": LORA_RANK, "alpha": 8}}
    data = tiny_config_dict(train_dir, max_steps=2, save_steps=2)
    data["model"], data["tokenizer"] = {"config": model}, {}
    run_training(TrainConfig.from_dict(data), tmp_path / "run")
    (tmp_path / "run" / "model").rename(tmp_path / "first")
    data["training"]["max_steps"] = 4
    final = run_training(TrainConfig.from_dict(data), tmp_path / "run", resume=True)
    adapter = load_file(str(final / "adapter" / "adapter_model.safetensors"))
    assert adapter and all(".lora_" in key for key in adapter)
    trained = LionFSModel.from_pretrained(final)
    base = LlamaForCausalLM.from_pretrained(tmp_path / "llm")
    q_proj = "model.layers.0.self_attn.q_proj"
    torch.testing.assert_close(trained.llm.get_submodule(q_proj).base_layer.weight, base.get_submodule(q_proj).weight)
    first = load_file(str(tmp_path / "first" / "adapter" / "adapter_model.safetensors"))
    assert any(not torch.equal(first[key], adapter[key]) for key in adapter)


def test_frozen_towers_train_from_cached_features(tmp_path, train_dir):
    model = copy.deepcopy(TINY_MODEL)
    model["vision"]["trainable"] = False
    model["ego"]["tower"]["trainable"] = False
    data = tiny_config_dict(train_dir, max_steps=3)
    data["model"] = {"config": model}
    data["data"]["frame_cache"] = "features"
    final = run_training(TrainConfig.from_dict(data), tmp_path / "run")
    cached = list((tmp_path / "run" / "frame_cache").glob("features-*/*.features.safetensors"))
    assert len(cached) == 3
    entry = load_file(str(cached[0]))
    assert entry["general"].shape[1:] == (5, 32) and entry["ego"].shape[0] == 4 * entry["general"].shape[0]
    trained = LionFSModel.from_pretrained(final)
    torch.manual_seed(0)
    fresh = LionFSModel.from_config(trained.config, tokenizer=trained.tokenizer)
    for name, tensor in trained.vision.state_dict().items():
        torch.testing.assert_close(tensor, fresh.vision.state_dict()[name], msg=name)  # towers untouched
