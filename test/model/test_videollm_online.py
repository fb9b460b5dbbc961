"""The VideoLLM-online v1+ release layout (adapter files alone), rebuilt tiny: peft LoRA adapter + connector on a Llama."""
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM, SiglipVisionModel

from lionfs_ros.model.checkpoint import CheckpointError
from lionfs_ros.model.videollm_online import load_videollm_online

from tiny_parts import random_frames
from videollm_online_release import ALPHA, R, write_release_adapter


@pytest.fixture
def v1plus(tiny_dirs, tmp_path):
    base = LlamaForCausalLM.from_pretrained(tiny_dirs["llm"])
    tensors = write_release_adapter(tmp_path / "adapter", base, vision_width=32, trainer_dir=False)
    return tmp_path / "adapter", tensors, base


def test_loads_as_single_encoder_model_with_v1plus_tokens(tiny_dirs, v1plus):
    adapter, tensors, base = v1plus
    model = load_videollm_online(adapter, tiny_dirs["llm"], tiny_dirs["siglip"]).eval()
    assert model.config.is_baseline and model.ego is None and model.tokens_per_frame == 10
    assert model.token_ids.interval == model.tokenizer.encode(",", add_special_tokens=False)[0]
    assert model.tokenizer.convert_ids_to_tokens(model.token_ids.placeholder) == "<v>"

    # frame tokens: SigLIP pooler output + 3x3 average-pooled patch grid -> connector MLP
    pixels = model.preprocess(random_frames(2, 0))
    siglip = SiglipVisionModel.from_pretrained(tiny_dirs["siglip"]).eval()
    with torch.no_grad():
        out = siglip(pixel_values=pixels)
        grid = out.last_hidden_state.view(2, 4, 4, -1).permute(0, 3, 1, 2)
        tokens = torch.cat([out.pooler_output[:, None], F.adaptive_avg_pool2d(grid, 3).flatten(2).transpose(1, 2)], 1)
        c = {k.split("connector.")[1]: v for k, v in tensors.items() if "connector" in k}
        expected = F.linear(F.gelu(F.linear(tokens, c["0.weight"], c["0.bias"])), c["2.weight"], c["2.bias"])
        torch.testing.assert_close(model.embed_frames(pixels), expected, atol=1e-5, rtol=1e-5)

    # the LLM: base weights + (alpha / r) * B @ A on every targeted linear, lm_head included
    with torch.no_grad():
        for name, param in base.named_parameters():
            module = name.rsplit(".", 1)[0]
            key = f"base_model.model.{module}.lora_A.weight"
            if name.endswith("weight") and key in tensors:
                param += (ALPHA / R) * tensors[key.replace("lora_A", "lora_B")] @ tensors[key]
        ids = torch.tensor([model.formatter.system_ids() + model.formatter.stream_open_ids()])
        torch.testing.assert_close(model.step_ids(ids).logits, base(ids).logits, atol=1e-4, rtol=1e-4)


def test_unknown_or_missing_adapter_keys_are_refused(tiny_dirs, v1plus):
    adapter, tensors, _ = v1plus
    file = adapter / "adapter_model.safetensors"
    save_file({**tensors, "base_model.model.router.weight": torch.zeros(2)}, str(file))
    with pytest.raises(CheckpointError, match="router.weight"):
        load_videollm_online(adapter, tiny_dirs["llm"], tiny_dirs["siglip"])
    partial = {k: v for k, v in tensors.items() if "layers.1.mlp.up_proj.lora_B" not in k}
    save_file(partial, str(file))
    with pytest.raises(CheckpointError, match="lacks LoRA weights"):
        load_videollm_online(adapter, tiny_dirs["llm"], tiny_dirs["siglip"])


def test_not_an_adapter_directory(tiny_dirs, tmp_path):
    (tmp_path / "adapter").mkdir()
    with pytest.raises(CheckpointError, match="adapter_config.json"):
        load_videollm_online(tmp_path / "adapter", tiny_dirs["llm"], tiny_dirs["siglip"])


def test_loaded_model_saves_and_reloads(tiny_dirs, v1plus, tmp_path):
    from lionfs_ros.model import LionFSModel

    adapter, _, _ = v1plus
    model = load_videollm_online(adapter, tiny_dirs["llm"], tiny_dirs["siglip"]).eval()
    model.save_pretrained(tmp_path / "saved")
    again = LionFSModel.from_pretrained(tmp_path / "saved").eval()
    frames = model.embed_frames(model.preprocess(random_frames(1, 0)))
    ids = model.formatter.system_ids() + model.formatter.stream_open_ids() + model.formatter.frame_ids(False)
    with torch.no_grad():
        assert torch.equal(model.step_ids(ids, frames).logits, again.step_ids(ids, again.embed_frames(again.preprocess(random_frames(1, 0)))).logits)
    assert load_file(tmp_path / "saved" / "adapter" / "adapter_model.safetensors").keys() >= {
        "base_model.model.lm_head.lora_A.weight", "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
    }
