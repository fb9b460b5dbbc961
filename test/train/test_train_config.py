"""Training configs: YAML with ``extends`` and ``--set`` overrides, typed, with errors that name the key."""
from pathlib import Path

import pytest

from lionfs_ros.train.build import model_config_of
from lionfs_ros.train.config import TrainConfig, TrainConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "config" / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_load_with_their_model(path):
    config = TrainConfig.load(path)
    model = model_config_of(config)
    assert (config.training.max_steps > 0 or config.fork_stage is not None) and model.stream.frame_fps > 0


@pytest.mark.parametrize("prefix", ["", "round1_"])
def test_ablations_change_only_their_mechanism(prefix):
    demo_name = "demo" if not prefix else "round1_demo"
    configs = [TrainConfig.load(REPO / f"config/train/{name}.yaml")
               for name in (demo_name, f"{prefix}ablation_general_only", f"{prefix}ablation_no_dropping")]
    assert all(c.training == configs[0].training and c.data == configs[0].data for c in configs)  # one budget
    assert all(c.frame_pretraining == configs[0].frame_pretraining for c in configs)
    demo, general_only, no_dropping = (model_config_of(c) for c in configs)
    assert (demo.aggregation.mode, demo.ego.source, demo.dropping.mode, demo.dropping.beta) == ("router", "tower", "mod", 0.5)
    assert (general_only.aggregation.mode, general_only.ego.source, general_only.dropping.mode) == ("none", "none", "mod")
    assert (no_dropping.aggregation.mode, no_dropping.dropping.mode) == ("router", "none")
    assert demo.llm.config == general_only.llm.config == no_dropping.llm.config
    assert demo.vision.config == general_only.vision.config == no_dropping.vision.config


def test_overrides_are_typed_yaml(tmp_path):
    config = TrainConfig.load(REPO / "config/train/demo.yaml",
                              ["training.max_steps=7", "data.train=[/a, /b]", "training.learning_rate=2e-4"])
    assert config.training.max_steps == 7 and config.data.train == ["/a", "/b"]
    assert config.training.learning_rate == pytest.approx(2e-4)


@pytest.mark.parametrize("data, message", [
    ({"data": {"train": "x", "trian": 1}}, "unknown key 'trian' (did you mean 'train'?)"),
    ({"data": {"train": "x"}, "training": {"max_steps": "many"}}, "training.max_steps must be int"),
    ({"data": {"train": "x", "format": "ego5d"}}, "data.format: 'ego5d' is not one of"),
    ({"data": {"train": ""}}, "data.train is required"),
    ({"data": {"train": "x"}, "model": {}}, "exactly one of 'preset', 'config' or 'init_from'"),
    ({"data": {"train": "x"}, "fork_stage": {}}, "fork_stage trains on the slow path's forks"),
    ({"data": {"train": "x"}, "training": {"max_steps": 0}}, "training.max_steps 0 skips the stream training"),
    ({"data": {"train": "x", "thinking": "answers"}, "fork_stage": {"relabel": 2}}, "fork_stage.relabel is a probability"),
])
def test_errors_name_the_key(data, message):
    data.setdefault("model", {"preset": "p.yaml"})
    with pytest.raises(TrainConfigError, match=_escaped(message)):
        TrainConfig.from_dict(data)


def test_extends_merges_sections_and_refuses_loops(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 3\ndata: {train: /x, questions: false}\nmodel: {preset: m.yaml}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ndata: {questions: true}\n")
    config = TrainConfig.load(tmp_path / "child.yaml")
    assert (config.seed, config.data.train, config.data.questions) == (3, "/x", True)
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(TrainConfigError, match="loops"):
        TrainConfig.load(tmp_path / "loop.yaml")


def _escaped(text: str) -> str:
    import re

    return re.escape(text)
