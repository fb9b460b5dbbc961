"""The slow path's crop tower (``crop.source: tower``): its own weights, saved and loaded with the model; the
general tower (the fast path's) stays as it was."""
import pytest
import torch
from safetensors.torch import load_file

from lionfs_ros.model import LionFSModel
from lionfs_ros.model.configuration_lionfs import ConfigError, CropConfig

from tiny_parts import random_frames
from test_checkpoint import logits_of, perturb_lora


def test_a_crop_tower_is_saved_and_loaded_with_the_model_and_leaves_the_general_tower(build, tmp_path):
    model = build(beta=0.5, lora=True)  # adapter-only: the general tower is named by its path, not stored
    perturb_lora(model)
    general = {k: v.clone() for k, v in model.vision.state_dict().items()}
    crops = model.preprocess(random_frames(3, 2))
    with torch.no_grad():
        assert torch.equal(model.crop_grid(crops), model.patch_grid(crops))  # no crop tower: the general reads crops
        encoder = model.add_crop_tower(trainable=False)
        assert torch.equal(model.crop_grid(crops), model.patch_grid(crops))  # a copy, weights included
        for param in encoder.parameters():
            param.add_(0.05 * torch.randn_like(param))  # as crop pretraining would move it
        crop_grid = model.crop_grid(crops)
    assert not torch.allclose(crop_grid, model.patch_grid(crops))
    assert all(torch.equal(v, general[k]) for k, v in model.vision.state_dict().items())  # the fast path's tower
    assert model.config.crop.source == "tower" and not model.config.crop.trainable
    model.save_pretrained(tmp_path / "m")
    stored = load_file(tmp_path / "m" / "model.safetensors")
    assert any(k.startswith("crop_vision.tower.") for k in stored)
    assert not any(k.startswith("vision.tower.") for k in stored)  # the named general tower still is not copied
    loaded = LionFSModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.crop.source == "tower"
    assert loaded.config.crop.config["model_type"] == model.vision.tower.config.model_type
    with torch.no_grad():
        assert torch.equal(loaded.crop_grid(crops), crop_grid)
        assert torch.equal(loaded.patch_grid(crops), model.patch_grid(crops))
    assert torch.equal(logits_of(loaded), logits_of(model))


def test_crop_config_is_checked():
    with pytest.raises(ConfigError, match="crop.source='tower' needs crop.config"):
        CropConfig("tower").validate()
    with pytest.raises(ConfigError, match="crop.config is only for"):
        CropConfig("general", {"model_type": "siglip_vision_model"}).validate()
    with pytest.raises(ConfigError, match="crop.source"):
        CropConfig("ego").validate()
