"""Crop pretraining (``crop_pretraining``): a tiny run gives the model a crop tower of its own, trained on
object crops before the stream, saved with the model and read by its slow path; the general tower is not it.
The run keeps the stage's heads as the model's crop reader (``data.keyframes.region_tags``): the stream training
inserts its tags into the forks (``train.region_tags``) and the saved model has the reader, its fourth head
(``part_colour``) reading the colour of a bottle's cap or a jar's lid."""
import json

import pytest
import torch

from lionfs_ros.model import LionFSModel
from lionfs_ros.train.config import TrainConfig
from lionfs_ros.data.synth import load_episode
from lionfs_ros.data.synth.frame_labels import NONE
from lionfs_ros.data.synth_objects import standing_objects
from lionfs_ros.data.synth_streams import synth_examples
from lionfs_ros.train.config import CropPretrainingSection
from lionfs_ros.model.crop_reader import ATTRIBUTES
from lionfs_ros.train.crop_pretraining import (CROP_DIR, SUMMARY_NAME, CropObject, ProposerCrops, attribute_classes,
                                               episode_objects, jittered, part_nouns, pretrain_crop_tower,
                                               proposed_objects)
from lionfs_ros.train.run import run_training
from lionfs_ros.train.trainer import MODEL_SUBDIR

from train_helpers import tiny_config_dict

STAGE_STEPS = 20  # two windows of 10 steps: the summary's first and last loss
KEYFRAMES = {"num_keyframes": 2, "history_frames": 4, "grid_sizes": [2], "max_regions": 2, "regions_on": "trigger",
             "box_source": "crop", "box_grid": 2, "region_tags": True}
STAGE = {"steps": STAGE_STEPS, "batch_size": 16, "learning_rate": 1e-3, "head_learning_rate": 1e-2, "warmup_steps": 0,
         "episodes": 3, "holdout_episodes": 1, "frame_step": 16}
PARTS = {"bottle": "cap", "jar": "lid"}  # the catalogue's part nouns


def _config(train_dir, **stage) -> dict:
    data = tiny_config_dict(train_dir, max_steps=2)
    data["data"].update(thinking="answers", thinking_question="after", keyframes=KEYFRAMES, max_examples=3,
                        regions={"features": "pixels", "min_score": 0.0})
    data["crop_pretraining"] = {**STAGE, **stage}
    return data


@pytest.fixture(scope="module")
def crop_run(tmp_path_factory, train_dir):
    out = tmp_path_factory.mktemp("crop_run")
    run_training(TrainConfig.from_dict(_config(train_dir, part_colour=True)), out)
    return out


def test_crop_pretraining_trains_a_crop_tower_that_is_saved_with_the_model(crop_run):
    summary = json.loads((crop_run / CROP_DIR / SUMMARY_NAME).read_text())
    assert summary["steps"] == STAGE_STEPS and summary["train_objects"] > 0 and summary["held_out_objects"] > 0
    assert summary["last_loss"] < summary["first_loss"], summary  # it learns the training crops
    for when in ("held_out_before", "held_out_after"):
        assert set(summary[when]) == {"label", "shape", "colour", "patch", "printed_label", "part_colour"}
    assert "crop_pretraining" in json.loads((crop_run / "train_summary.json").read_text())
    model = LionFSModel.from_pretrained(crop_run / MODEL_SUBDIR).eval()
    assert model.config.crop.source == "tower" and not model.config.crop.trainable  # frozen in stage 2 by default
    assert model.config.thinking.keyframes.box_source == "crop"
    crops = torch.rand(2, 3, model.vision.image_size, model.vision.image_size) * 2 - 1
    with torch.no_grad():
        assert not torch.allclose(model.crop_grid(crops), model.patch_grid(crops))  # the slow path reads its own
        tags = model.region_tags(model.crop_grid(crops))
    assert model.config.thinking.keyframes.region_tags and model.config.crop.reader_pool == KEYFRAMES["box_grid"]
    classes = model.config.crop.reader_classes
    assert classes["label"][0] == "none" and len(classes["shape"]) == summary["classes"]["shape"]
    assert classes["patch"][0] == "none" and len(classes["patch"]) > 2 and model.config.crop.reader_parts == PARTS
    assert len(tags) == 2 and all(tag in model.crop_reader.all_tags() for tag in tags)
    assert any(tag.endswith(" cap") for tag in model.crop_reader.all_tags())


def test_crop_pretraining_needs_the_slow_paths_crops(train_dir):
    data = _config(train_dir)
    data["data"]["thinking"] = "none"
    with pytest.raises(ValueError, match="crop_pretraining trains the tower"):
        TrainConfig.from_dict(data)
    data = _config(train_dir)
    data["data"]["keyframes"] = {**KEYFRAMES, "box_source": "grid"}
    with pytest.raises(ValueError, match="box_source 'crop'"):
        TrainConfig.from_dict(data)
    data = _config(train_dir)
    del data["crop_pretraining"]
    with pytest.raises(ValueError, match="region_tags writes what the crop reader reads"):
        TrainConfig.from_dict(data)
    with pytest.raises(ValueError, match="jitter"):
        TrainConfig.from_dict(_config(train_dir, jitter=1.5))
    with pytest.raises(ValueError, match="crops must be one of"):
        TrainConfig.from_dict(_config(train_dir, crops="tiles"))


def test_proposer_crops_train_a_new_reader_on_the_tower_as_it_is(crop_run, train_dir, tmp_path):
    """``crops: proposer``, ``train_tower: false``: the crops are the proposer's regions, each named by the object
    it holds (``none`` classes where it holds none); the heads alone learn and become the model's reader."""
    model = LionFSModel.from_pretrained(crop_run / MODEL_SUBDIR).eval()
    keyframes, regions = model.config.thinking.keyframes, model.config.thinking.regions
    episode_id = "train_000000"
    spec = ProposerCrops(keyframes, regions, model.vision.grid_side, motion_step=4)
    found = list(proposed_objects(str(train_dir), episode_id, 16, spec))
    episode = load_episode(train_dir, episode_id, frames=False)
    standing = standing_objects(str(train_dir), episode, [frame for frame, _, _ in found])
    crops = [(o, here) for (_, _, objects), here in zip(found, standing) for o in objects]
    assert all(0 < len(objects) <= keyframes.max_regions for _, _, objects in found)
    held = [o for o, _ in crops if o.shape != NONE]
    assert held and len(held) < len(crops)  # regions on objects and regions on none
    assert all((o.label, o.shape, o.colour, o.patch) in {(s.label, s.shape, s.colour, s.patch) for s in here}
               for o, here in crops if o.shape != NONE)
    assert all(o.patch == NONE for o, _ in crops if o.shape == NONE)
    tower = {k: v.clone() for k, v in model.crop_vision.state_dict().items()}
    section = CropPretrainingSection(**{**STAGE, "steps": 3, "batch_size": 8}, crops="proposer", train_tower=False)
    summary = pretrain_crop_tower(model, synth_examples(train_dir, 2.0, questions=False), model.vision.processor, section,
                                  keyframes.box_grid, keyframes.crop_margin, keyframes.crop_min, tmp_path, torch.device("cpu"),
                                  False, 0, keep_reader=True, proposer=(keyframes, regions))
    assert summary["steps"] == 3 and summary["crops"] == "proposer" and not summary["train_tower"]
    assert all(torch.equal(tower[k], v) for k, v in model.crop_vision.state_dict().items())
    classes = model.crop_reader.classes
    assert classes["shape"][0] == NONE and classes["colour"][0] == NONE and " nothing" in model.crop_reader.all_tags()


def test_crop_objects_are_named_by_their_parts_colour(train_dir):
    """Every standing object's crop is named by its part's colour (``patch``: the episode's ``patch_colour``, ``none``
    without a part) and the part's catalogue noun; the reader's classes and part nouns come from them."""
    episode_id = "train_000000"
    episode = load_episode(train_dir, episode_id, frames=False)
    records = {r.object_id: r for r in episode.objects}
    found = list(episode_objects(str(train_dir), episode_id, 16))
    standing = standing_objects(str(train_dir), episode, [frame for frame, _, _ in found])
    crops = [(o, records[s.object_id]) for (_, _, objects), here in zip(found, standing) for o, s in zip(objects, here)]
    with_part = [o for o, record in crops if record.patch_colour]
    assert with_part and len(with_part) < len(crops)
    for obj, record in crops:
        assert (obj.shape, obj.colour, obj.patch) == (record.shape, record.colour, record.patch_colour or NONE)
        assert obj.part == PARTS.get(record.shape, NONE) if record.patch_colour else obj.part == NONE
    objects = [o for o, _ in crops]
    classes = attribute_classes(objects, ATTRIBUTES)
    assert classes["patch"] == (NONE, *sorted({o.patch for o in with_part}))
    assert part_nouns(objects) == {o.shape: PARTS[o.shape] for o in with_part}
    assert "patch" not in attribute_classes(objects)  # three attributes unless part_colour


def test_jitter_moves_and_scales_a_box_within_its_bounds():
    box = (0.4, 0.4, 0.6, 0.5)
    assert jittered(box, torch.full((3,), 0.5).numpy(), 0.25, 1.25) == pytest.approx(box)
    x0, y0, x1, y1 = jittered(box, torch.ones(3).numpy(), 0.25, 1.25)  # the farthest right/down, the largest
    assert (x0 + x1) / 2 == pytest.approx(0.5 + 0.25 * 0.2) and (y0 + y1) / 2 == pytest.approx(0.45 + 0.25 * 0.1)
    assert x1 - x0 == pytest.approx(0.2 * 1.25) and y1 - y0 == pytest.approx(0.1 * 1.25)
    assert CropObject(0, box, "none", "cup", "red").label == "none"
