"""Model directories: save -> load is exact; unsafe or mismatched directories are refused clearly."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lionfs_ros.model import LionFSModel
from lionfs_ros.model.checkpoint import CheckpointError

from tiny_parts import random_frames


def logits_of(model):
    sample = model.formatter.encode([
        {"role": "stream", "num_frames": 2, "learn": True},
        {"role": "assistant", "content": "Cut it.", "learn": True},
    ])
    g = model.preprocess(random_frames(2, 0))
    e = model.preprocess(random_frames(4, 1), "ego") if model.ego is not None else None
    with torch.no_grad():
        return model(sample.input_ids[None], general=g, ego=e).logits


def perturb_lora(model):
    with torch.no_grad():
        for name, param in model.llm.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)  # fresh LoRA B is zero: make the adapter matter


@pytest.mark.parametrize("kind", ["lionfs", "baseline"])
def test_save_load_gives_identical_logits(build, tmp_path, kind):
    model = build(beta=0.5, lora=True) if kind == "lionfs" else build(fused=False)
    if kind == "lionfs":
        perturb_lora(model)
    model.save_pretrained(tmp_path / "m")
    files = sorted(p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file())
    assert "config.json" in files and "model.safetensors" in files
    assert ("adapter/adapter_model.safetensors" in files) == (kind == "lionfs")
    loaded = LionFSModel.from_pretrained(tmp_path / "m").eval()
    assert torch.equal(logits_of(loaded), logits_of(model))
    assert loaded.token_ids == model.token_ids
    if kind == "lionfs":  # a LoRA model on a named base saves adapter-only: the base is named, not copied
        assert loaded.config.llm.path == model.config.llm.path and loaded.config.llm.config is None
        assert not any(k.startswith("llm.") for k in load_file(tmp_path / "m" / "model.safetensors"))
        adapter = json.loads((tmp_path / "m" / "adapter" / "adapter_config.json").read_text())
        assert adapter["base_model_name_or_path"] == model.config.llm.path
    else:
        assert loaded.config.llm.path is None and loaded.config.llm.config["model_type"] == "llama"


def test_adapter_uses_peft_key_layout(build, tmp_path):
    model = build(beta=0.5, lora=True)
    model.save_pretrained(tmp_path / "m")
    keys = load_file(tmp_path / "m" / "adapter" / "adapter_model.safetensors").keys()
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    config = json.loads((tmp_path / "m" / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4


def test_merged_lora_matches_unmerged(build, tmp_path):
    model = build(beta=0.5, lora=True)
    perturb_lora(model)
    before = logits_of(model)
    model.merge_lora().save_pretrained(tmp_path / "m")
    torch.testing.assert_close(logits_of(model), before, atol=1e-5, rtol=1e-5)
    assert not (tmp_path / "m" / "adapter").exists()
    torch.testing.assert_close(logits_of(LionFSModel.from_pretrained(tmp_path / "m")), before, atol=1e-5, rtol=1e-5)


@pytest.fixture
def saved(build, tmp_path):
    build(fused=False).save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        LionFSModel.from_pretrained(tmp_path / "nowhere")


def test_malformed_config_names_the_file(saved):
    (saved / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="config.json"):
        LionFSModel.from_pretrained(saved)


def test_config_of_wrong_kind_names_the_file(saved):
    data = json.loads((saved / "config.json").read_text())
    data["dropping"]["mode"] = "sometimes"
    (saved / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="config.json.*dropping.mode"):
        LionFSModel.from_pretrained(saved)


def test_pickles_are_refused(saved):
    (saved / "pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    with pytest.raises(CheckpointError, match="pickle"):
        LionFSModel.from_pretrained(saved)


def test_unknown_and_missing_keys_are_refused(saved):
    weights = load_file(saved / "model.safetensors")
    save_file({**weights, "connector.9.weight": torch.zeros(2)}, saved / "model.safetensors")
    with pytest.raises(CheckpointError, match="connector.9.weight"):
        LionFSModel.from_pretrained(saved)
    weights.pop("connector.0.bias")
    save_file(weights, saved / "model.safetensors")
    with pytest.raises(CheckpointError, match="lacks weights.*connector.0.bias"):
        LionFSModel.from_pretrained(saved)


def test_tied_embeddings_are_stored_once_and_stay_tied(tiny_dirs, tmp_path):
    from lionfs_ros.model import LionFSConfig
    from lionfs_ros.model.tokenization import load_tokenizer

    tokenizer = load_tokenizer(tiny_dirs["llm"])
    llm = {"model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
           "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "tie_word_embeddings": True}
    config = LionFSConfig.from_dict({"vision": {"path": tiny_dirs["siglip"]}, "llm": {"config": llm}})
    torch.manual_seed(0)
    model = LionFSModel.from_config(config, tokenizer=tokenizer).eval()
    model.save_pretrained(tmp_path / "m")
    keys = load_file(tmp_path / "m" / "model.safetensors").keys()
    assert ("llm.lm_head.weight" in keys) != ("llm.model.embed_tokens.weight" in keys)
    loaded = LionFSModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.llm.lm_head.weight.data_ptr() == loaded.llm.model.embed_tokens.weight.data_ptr()
    assert torch.equal(logits_of(loaded), logits_of(model))
