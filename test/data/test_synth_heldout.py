"""Held-out combinations: never in train/val, always in --heldout scenes."""
from __future__ import annotations

import numpy as np
import pytest

from lionfs_ros.data.synth import GeneratorConfig, GeneratorConfigError, generate_episode
from lionfs_ros.data.synth.annotate import narrate
from lionfs_ros.data.synth.generate import plan_episode
from lionfs_ros.data.synth.scene import heldout_combinations, sample_scene

SCENES = 150


def _has_heldout(scene, catalogue):
    kinds = [(obj.shape, obj.colour) for obj in scene.objects]
    shapes = {shape for shape, _ in kinds}
    return (any(kind in catalogue.heldout.shape_colour for kind in kinds)
            or any(pair <= shapes for pair in catalogue.heldout.shape_pair))


def test_train_scenes_never_contain_a_heldout_combination(catalogue):
    rng = np.random.default_rng(0)
    for _ in range(SCENES):
        scene = sample_scene(rng, catalogue, heldout=False)
        assert not _has_heldout(scene, catalogue)
        assert scene.heldout_combinations == ()


def test_heldout_scenes_always_contain_one(catalogue):
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(SCENES):
        scene = sample_scene(rng, catalogue, heldout=True)
        assert _has_heldout(scene, catalogue)
        assert scene.heldout_combinations
        seen.update(scene.heldout_combinations)
    rules = len(catalogue.heldout.shape_colour) + len(catalogue.heldout.shape_pair)
    assert len(seen) >= rules  # every rule gets exercised


def test_heldout_combination_strings(catalogue):
    assert heldout_combinations([("cup", "green"), ("cup", "red")], catalogue) == ["green cup"]
    assert heldout_combinations([("bottle", "red"), ("bowl", "blue")], catalogue) == ["bottle+bowl"]
    assert heldout_combinations([("cup", "red")], catalogue) == []


@pytest.mark.parametrize("split", ["train", "val"])
def test_generated_splits_have_no_heldout_episode(catalogue, split):
    config = GeneratorConfig(seed=4, split=split, catalogue=catalogue)
    for index in range(20):
        plan = plan_episode(config, index)
        assert plan.scene.heldout_combinations == ()
        assert not any(n.heldout for n in narrate(catalogue, plan.scene, plan.timeline))


def test_heldout_episodes_act_on_the_heldout_objects(catalogue, tiny_config):
    config = GeneratorConfig(seed=4, split="val", heldout=True, catalogue=catalogue)
    for index in range(20):
        plan = plan_episode(config, index)
        narrations = narrate(catalogue, plan.scene, plan.timeline)
        assert plan.scene.heldout_combinations
        assert narrations[0].heldout  # the first action is forced onto a held-out object
    episode = generate_episode(tiny_config(seed=4, split="val", heldout=True), 0)
    assert episode.episode_id.startswith("heldout_") and episode.heldout_combinations


def test_heldout_is_refused_for_train(catalogue):
    with pytest.raises(GeneratorConfigError, match="train"):
        GeneratorConfig(seed=0, split="train", heldout=True, catalogue=catalogue)
