"""LionFSConfig: round trips and clear validation errors."""
import json

import pytest

from lionfs_ros.model import ConfigError, LionFSConfig


def base() -> dict:
    return {
        "vision": {"config": {"model_type": "siglip_vision_model", "hidden_size": 32}},
        "llm": {"config": {"model_type": "llama"}},
    }


def test_round_trip_through_dict_json_and_yaml(tmp_path):
    cfg = LionFSConfig.from_dict(base())
    assert cfg.is_baseline and cfg.tokens_per_frame == 10
    assert LionFSConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    yaml_file = tmp_path / "m.yaml"
    yaml_file.write_text("vision:\n  path: /x/siglip\n  pool_grid: 2\nllm:\n  path: /x/llm\ndropping:\n  mode: mod\n  beta: 0.25\n")
    loaded = LionFSConfig.load(yaml_file)
    assert loaded.tokens_per_frame == 5 and loaded.dropping.layer_indices(6) == [0, 2, 4]
    assert not loaded.is_baseline


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"vision": {}}, "exactly one of 'path'"),
        ({"ego": {"source": "tower"}, "aggregation": {"mode": "router"}}, "needs ego.tower"),
        ({"aggregation": {"mode": "router"}}, "set ego.source"),
        ({"dropping": {"mode": "mod", "beta": 1.5}}, "beta must be in"),
        ({"dropping": {"mode": "sometimes"}}, "dropping.mode"),
        ({"llm": {"path": "/x", "attn_implementation": "flash_attention_2"}}, "attn_implementation"),
        ({"stream": {"frame_fps": 0}}, "frame_fps"),
        ({"vision": {"path": "/x", "colour": 1}}, "unknown keys"),
        ({"extras": {}}, "unknown LionFS config sections"),
    ],
)
def test_validation_errors_say_what_is_wrong(patch, message):
    data = base()
    data.update(patch)
    with pytest.raises(ConfigError, match=message):
        LionFSConfig.from_dict(data)


def test_ego_tower_must_match_token_count():
    data = base()
    data["ego"] = {"source": "tower", "tower": {"path": "/x", "pool_grid": 2}}
    data["aggregation"] = {"mode": "router"}
    with pytest.raises(ConfigError, match="tokens per frame"):
        LionFSConfig.from_dict(data)


def test_dropping_layers_outside_backbone_are_refused():
    cfg = LionFSConfig.from_dict({**base(), "dropping": {"mode": "mod", "layers": [1, 9]}})
    with pytest.raises(ConfigError, match=r"\[9\]"):
        cfg.dropping.layer_indices(4)


def test_bad_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        LionFSConfig.load(bad)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        LionFSConfig.load(tmp_path / "missing.yaml")


def test_shipped_presets_are_valid():
    from pathlib import Path

    presets = sorted((Path(__file__).resolve().parents[2] / "config" / "model").glob("*.yaml"))
    assert presets, "config/model/*.yaml presets are missing"
    for preset in presets:
        cfg = LionFSConfig.load(preset)
        assert cfg.tokens_per_frame == 10, preset.name
