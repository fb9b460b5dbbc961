"""Stage 1, frame-encoder pretraining: its labels match what happened, it learns, and the stream training
starts from what it learned (a restarted run reloads it instead of training again)."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lionfs_ros.data.synth import load_catalogue, load_episode
from lionfs_ros.data.synth.frame_labels import NONE, SCENE, FrameAttributes, frame_labels
from lionfs_ros.data.synth_streams import synth_examples
from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.model import LionFSModel
from lionfs_ros.train.build import build_model, model_config_of, obtain_tokenizer
from lionfs_ros.train.config import FramePretrainingSection, TrainConfig, TrainConfigError
from lionfs_ros.train.frame_pretraining import (PRETRAIN_DIR, SUMMARY_NAME, WEIGHTS_NAME, frame_encoder_parameters,
                                                pretrain_frame_encoder)
from lionfs_ros.train.run import run_training
from lionfs_ros.train.trainer import MODEL_SUBDIR

from train_helpers import tiny_config, tiny_config_dict, write_episodes

FRAME_FPS = 2.0
STAGE1 = {"steps": 60, "clips_per_batch": 3, "frames_per_clip": 8, "learning_rate": 3e-3, "warmup_steps": 5,
          "holdout_clips": 1, "log_window": 10}


@pytest.fixture(scope="module")
def labelled_dir(tmp_path_factory):
    config_root = tmp_path_factory.mktemp("labels") / "synth"
    from lionfs_ros.data.synth import GeneratorConfig, generate_dataset

    generate_dataset(config_root, GeneratorConfig(seed=21, split="train", num_actions=6),
                     num_episodes=3, write_bags=False)
    return config_root


def test_every_narration_follows_a_frame_labelled_with_its_action(labelled_dir):
    attributes = FrameAttributes.from_catalogue(load_catalogue())
    checked = 0
    for example in synth_examples(labelled_dir, FRAME_FPS, questions=False):
        episode = load_episode(labelled_dir, example.source.episode_id, frames=False)
        labels = frame_labels(episode, np.arange(example.num_frames) / FRAME_FPS, FRAME_FPS, attributes)
        objects = {o.object_id: o for o in episode.objects}
        for narration in episode.narrations:
            action = episode.actions[narration.action_index]
            frame = example.frame_of(narration.time)
            named = {name: attributes.classes[name][labels[name][frame]] for name in attributes.classes}
            assert named["verb"] == action.verb, (narration.text, named)
            assert named["object_colour"] == objects[action.object_id].colour, (narration.text, named)
            assert named["object_shape"] == objects[action.object_id].shape, (narration.text, named)
            assert objects[action.object_id].colour in narration.text and action.verb.split("_")[0] in narration.text
            if action.target_id is None:
                assert named["target_shape"] == NONE
            else:
                assert named["target_colour"] == objects[action.target_id].colour
            checked += 1
        for segment in episode.static_segments:  # nothing happens there: every attribute is none
            inside = [i for i in range(example.num_frames) if segment.start + 1 / FRAME_FPS < i / FRAME_FPS < segment.end]
            assert all(labels["verb"][i] == 0 and labels["object_colour"][i] == 0 for i in inside)
        assert labels[SCENE].shape == (example.num_frames, len(attributes.scene))
        assert labels[SCENE].sum(axis=1).min() >= len(episode.objects)  # (colour, shape) of each, plus labels
    assert checked >= 12


def _fresh_model(config, out):
    model_config = model_config_of(config)
    examples = synth_examples(config.data.train, model_config.stream.frame_fps)
    tokenizer = obtain_tokenizer(config, model_config, examples, out)
    return build_model(config, model_config, tokenizer), examples


def test_pretraining_learns_the_labels_and_a_restart_reloads_it(tmp_path, labelled_dir):
    config = tiny_config(labelled_dir)
    section = FramePretrainingSection(**STAGE1)
    model, examples = _fresh_model(config, tmp_path)
    recipe = FrameRecipe.for_model(model)
    summary = pretrain_frame_encoder(model, examples, recipe, section, tmp_path / PRETRAIN_DIR, torch.device("cpu"),
                                     bf16=False, seed=0)
    assert summary["last_loss"] < 0.6 * summary["first_loss"], summary
    assert summary["held_out_clips"] == 1 and set(summary["held_out_after"]) >= {"verb", "object_colour", "scene_f1"}
    saved = load_file(str(tmp_path / PRETRAIN_DIR / WEIGHTS_NAME))
    assert set(saved) == set(frame_encoder_parameters(model)) and not any(k.startswith("llm.") for k in saved)

    restarted, _ = _fresh_model(config, tmp_path)
    assert not torch.equal(restarted.vision.tower.state_dict()[next(iter(restarted.vision.tower.state_dict()))],
                           model.vision.tower.state_dict()[next(iter(model.vision.tower.state_dict()))])
    again = pretrain_frame_encoder(restarted, examples, recipe, section, tmp_path / PRETRAIN_DIR, torch.device("cpu"),
                                   bf16=False, seed=0)
    assert again == summary
    for name, param in frame_encoder_parameters(restarted).items():
        torch.testing.assert_close(param, saved[name])


def test_stream_training_starts_from_the_pretrained_encoder(tmp_path, labelled_dir):
    settings = tiny_config_dict(labelled_dir, max_steps=1, learning_rate=0.0)
    settings["frame_pretraining"] = dict(STAGE1, steps=10)
    run_training(TrainConfig.from_dict(settings), tmp_path)
    stage1 = json.loads((tmp_path / PRETRAIN_DIR / SUMMARY_NAME).read_text())
    assert stage1["steps"] == 10
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["frame_pretraining"]["held_out_after"] == stage1["held_out_after"]
    saved = load_file(str(tmp_path / PRETRAIN_DIR / WEIGHTS_NAME))
    final = LionFSModel.from_pretrained(tmp_path / MODEL_SUBDIR)
    params = dict(final.named_parameters())
    for name, tensor in saved.items():  # stage 2 ran at learning rate 0: the encoder is stage 1's
        torch.testing.assert_close(params[name].float(), tensor)


def test_config_refuses_frame_pretraining_without_synthetic_pixels(labelled_dir):
    settings = tiny_config_dict(labelled_dir)
    settings["frame_pretraining"] = {"steps": 0}
    with pytest.raises(TrainConfigError, match="frame_pretraining.steps"):
        TrainConfig.from_dict(settings)
    settings["frame_pretraining"] = {"steps": 5}
    settings["data"]["frame_cache"] = "features"
    with pytest.raises(TrainConfigError, match="frame_pretraining"):
        TrainConfig.from_dict(settings)


def test_frozen_towers_stay_as_stage_one_left_them(tmp_path, labelled_dir):
    settings = tiny_config_dict(labelled_dir, max_steps=3)
    settings["frame_pretraining"] = dict(STAGE1, steps=10, freeze_towers=True)
    run_training(TrainConfig.from_dict(settings), tmp_path)
    saved = load_file(str(tmp_path / PRETRAIN_DIR / WEIGHTS_NAME))
    final = LionFSModel.from_pretrained(tmp_path / MODEL_SUBDIR)
    assert final.config.vision.trainable is False and final.config.ego.tower.trainable is False
    params = dict(final.named_parameters())
    towers = [name for name in saved if name.startswith(("vision.tower.", "ego.tower."))]
    assert towers and all(torch.equal(params[name].float(), saved[name]) for name in towers)
    assert not all(torch.equal(params[name].float(), saved[name]) for name in saved if name.startswith("connector."))


def test_cell_labels_name_the_colour_drawn_in_that_cell(labelled_dir):
    """Replaying the plan puts each object where the renderer drew it: its cell holds its palette colour."""
    from lionfs_ros.data.synth import read_manifest
    from lionfs_ros.data.synth.frame_labels import cell_labels

    catalogue = load_catalogue()
    attributes = FrameAttributes.from_catalogue(catalogue)
    grid, near, checked, found, found_elsewhere = 4, 60, 0, 0, 0
    for example in synth_examples(labelled_dir, FRAME_FPS, questions=False):
        episode = load_episode(labelled_dir, example.source.episode_id)
        native = np.arange(0, len(episode.frames), 2)
        labels = cell_labels(episode, read_manifest(labelled_dir), native, grid, attributes)
        size = episode.width // grid
        for i, frame in enumerate(native):
            for cell, colour_index in enumerate(labels["cell_colour"][i]):
                if colour_index == 0:
                    continue
                rgb = np.array(catalogue.colours[attributes.cells["cell_colour"][colour_index]], np.int32)
                row, column = divmod(cell, grid)
                pad = size // 2  # an object centred in a cell may be drawn across its border
                patch = episode.frames[frame, max(0, row * size - pad):(row + 1) * size + pad,
                                       max(0, column * size - pad):(column + 1) * size + pad]
                across = episode.frames[frame, max(0, (grid - 1 - row) * size - pad):(grid - row) * size + pad,
                                        max(0, (grid - 1 - column) * size - pad):(grid - column) * size + pad]
                checked += 1
                found += int((np.abs(patch.astype(np.int32) - rgb).sum(-1) < near).any())
                found_elsewhere += int((np.abs(across.astype(np.int32) - rgb).sum(-1) < near).any())
    assert checked > 50 and found / checked > 0.9, (found, checked)  # the rest: covered by a hand or a stacked object
    assert found_elsewhere < 0.7 * found, (found_elsewhere, found)  # the mirrored cell is no match


def test_a_corrupt_stage_one_file_fails_with_its_path(tmp_path, labelled_dir):
    from lionfs_ros.model.checkpoint import CheckpointError

    config = tiny_config(labelled_dir)
    model, examples = _fresh_model(config, tmp_path)
    stage = tmp_path / PRETRAIN_DIR
    stage.mkdir()
    (stage / WEIGHTS_NAME).write_bytes(b"not a safetensors file")
    (stage / SUMMARY_NAME).write_text("{}")
    with pytest.raises(CheckpointError, match=WEIGHTS_NAME):
        pretrain_frame_encoder(model, examples, FrameRecipe.for_model(model), FramePretrainingSection(**STAGE1),
                               stage, torch.device("cpu"), bf16=False)
