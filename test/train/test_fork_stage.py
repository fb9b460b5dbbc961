"""The fork stage (``train.fork_stage``): cached samples give the model's own loss, and only the LLM learns."""
from __future__ import annotations

import copy
import json
import random

import pytest
import torch

from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.data.synth_streams import synth_examples
from lionfs_ros.model import LionFSModel
from lionfs_ros.model.configuration_lionfs import RegionConfig, ThinkingConfig
from lionfs_ros.train.dataset import StreamCollator, StreamDataset
from lionfs_ros.train.fork_stage import CachedSample, cache_samples, cached_sample, fork_loss, relabel, train_forks
from lionfs_ros.train.config import TrainConfig
from lionfs_ros.train.region_tags import insert_region_tags
from lionfs_ros.train.run import run_training
from lionfs_ros.train.thinking import ThinkingSampler
from lionfs_ros.train.trainer import prepare_model_inputs

from train_helpers import tiny_config_dict
from test_thinking_samples import KF_TAGS, NOVELTY_CELLS, PIXEL_REGIONS, crop_tower_model, model, reader_model  # noqa: F401

FPS = 2.0
DETAIL_WEIGHT = 3.0


@pytest.fixture(scope="module")
def tagged(reader_model, train_dir):
    """The reader model with the tag template on, its one-episode dataset and the collated, tagged inputs."""
    model = copy.deepcopy(reader_model)
    model.config.thinking = ThinkingConfig("all", KF_TAGS, PIXEL_REGIONS, "after")
    recipe = FrameRecipe.for_model(model)
    sampler = ThinkingSampler(model.formatter, model.vision.grid_side, model.config.thinking, NOVELTY_CELLS,
                              processor=recipe.general, detail_weight=DETAIL_WEIGHT)
    dataset = StreamDataset(synth_examples(train_dir, FPS, questions=True, limit=1), model.formatter, recipe,
                            thinking=sampler)
    collate = StreamCollator(pad_id=model.tokenizer.pad_token_id, ignore_index=model.config.stream.ignore_index)
    with torch.no_grad():
        inputs = insert_region_tags(model, prepare_model_inputs(collate([dataset[0]]), recipe))
    return model, dataset, collate, recipe, inputs


def test_cached_sample_gives_the_models_loss(tagged):
    """main_weight 1: the model's own forward loss; main_weight 0: the forward's loss with only the forks'
    targets, though the sequence is cut after the last fork."""
    model, _, _, _, inputs = tagged
    with torch.no_grad():
        full = model(**inputs)
        torch.testing.assert_close(fork_loss(model, cached_sample(model, inputs, 1.0)), full.loss, atol=1e-5, rtol=1e-5)
        forks_only = dict(inputs, labels=inputs["labels"].masked_fill(inputs["branch_ids"] == 0, -100))
        expected = model(**forks_only).loss
        cut = cached_sample(model, inputs, 0.0)
        assert cut.input_ids.shape[1] < int(inputs["attention_mask"].sum())  # main context after the last fork cut
        assert cut.weighted_forks() > 0
        torch.testing.assert_close(fork_loss(model, cut), expected, atol=1e-5, rtol=1e-5)


def test_train_forks_moves_only_the_llm_and_lowers_the_loss(tagged):
    model, dataset, collate, recipe, _ = tagged
    model = copy.deepcopy(model)
    samples = cache_samples(model, dataset, collate, recipe, main_weight=0.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        loss_before = float(fork_loss(model, samples[0]))
    history = train_forks(model, samples, steps=10, learning_rate=1e-2, warmup=1, log_every=5, log=lambda h: None)
    with torch.no_grad():
        loss_after = float(fork_loss(model, samples[0]))
    assert [h["step"] for h in history] == [5, 10]
    assert loss_after < 0.7 * loss_before
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert moved and all(name.startswith("llm.") for name in moved)
    assert not model.training and all(p.requires_grad == name.startswith("llm.") for name, p in model.named_parameters())


def _fork_sample(answer: list[int], tag: list[int]) -> CachedSample:
    """main 0..3, then a fork: [7, *tag, 8, 9] (template, tag, question) and the answer + EOS (2), weighted."""
    fork = [7, *tag, 8, 9, *answer, 2]
    ids = [1, 3, 4, 5] + fork
    first = 4 + 2 + len(tag)  # the question's last token (9) predicts the answer's first
    labels = [-100] * len(ids)
    labels[first:first + len(answer) + 1] = answer + [2]
    weights = [1.0] * len(ids)
    weights[first:first + len(answer) + 1] = [5.0] * (len(answer) + 1)
    return CachedSample(torch.tensor([ids]), torch.tensor([labels]), torch.ones(1, len(ids), dtype=torch.long),
                        torch.tensor([list(range(4)) + list(range(4, 4 + len(fork)))]),
                        torch.tensor([[0] * 4 + [1] * len(fork)]), torch.zeros(1, len(ids), dtype=torch.bool),
                        torch.tensor([weights]), torch.zeros(0, 4), torch.zeros(0, 4))


def test_relabel_swaps_the_tagged_label_in_tags_and_answer_alike():
    choices = {1: [(50,), (51,)], 2: [(60, 61), (62, 63)]}
    sample = _fork_sample([60, 61], [40, 60, 61])
    new = relabel(sample, choices, eos=2, ignore=-100, rng=random.Random(0))
    ids, labels = new.input_ids[0].tolist(), new.labels[0].tolist()
    swapped = ids[6:8]
    assert tuple(swapped) in choices[2]
    assert ids[-3:-1] == swapped and [t for t in labels if t != -100] == swapped + [2]
    learned = [i for i, t in enumerate(labels) if t != -100]
    assert all(labels[i] == ids[i + 1] for i in learned)  # still next-token targets
    changed = {tuple(relabel(sample, choices, 2, -100, random.Random(seed)).input_ids[0, 6:8].tolist()) for seed in range(8)}
    assert changed == set(choices[2])
    untagged = _fork_sample([50], [40, 41])  # the answer is in no tag: nothing to copy, left alone
    assert torch.equal(relabel(untagged, choices, 2, -100, random.Random(0)).input_ids, untagged.input_ids)
    unknown = _fork_sample([70], [70])  # not a printed label
    assert torch.equal(relabel(unknown, choices, 2, -100, random.Random(0)).labels, unknown.labels)


def test_lionfs_train_runs_the_fork_stage_alone_on_a_trained_model(trained_run, train_dir, tmp_path):
    """``training.max_steps: 0`` + ``fork_stage``: no stream stage; the LLM of ``model.init_from`` is trained on the
    forks and saved, the summary says what the stage did."""
    data = tiny_config_dict(train_dir, max_steps=0, report_to=[])
    data.update(model={"init_from": str(trained_run / "model")}, tokenizer={},
                fork_stage={"steps": 3, "batch_size": 1, "episodes": 2, "learning_rate": 1e-3, "warmup_steps": 1})
    data["data"].update(thinking="answers")
    out = run_training(TrainConfig.from_dict(data), tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["global_step"] == 0 and summary["fork_stage"]["steps"] == 3 and 1 <= summary["fork_stage"]["episodes"] <= 2
    before, after = LionFSModel.from_pretrained(trained_run / "model"), LionFSModel.from_pretrained(out)
    changed = {n for n, p in after.state_dict().items() if not torch.equal(p, before.state_dict()[n])}
    assert changed and all(n.startswith("llm.") for n in changed)
