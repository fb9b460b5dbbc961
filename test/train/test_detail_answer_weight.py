"""training.detail_answer_weight: detail answers on thinking forks weigh more in the LM loss, nothing else changes."""
import pytest
import torch
import torch.nn.functional as F

from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.data.stream_examples import to_messages
from lionfs_ros.data.synth_streams import synth_examples
from lionfs_ros.model import LionFSConfig, LionFSModel
from lionfs_ros.model.configuration_lionfs import KeyframeConfig, RegionConfig, ThinkingConfig
from lionfs_ros.model.tokenization import train_byte_bpe_tokenizer
from lionfs_ros.train.config import TrainConfig
from lionfs_ros.train.dataset import StreamCollator, StreamDataset
from lionfs_ros.train.thinking import DETAIL, ThinkingSampler
from lionfs_ros.train.trainer import prepare_model_inputs

from train_helpers import TINY_MODEL, tiny_config_dict

FPS = 2.0
KF = KeyframeConfig(num_keyframes=2, history_frames=4, grid_sizes=(2,), regions_on="none", min_novelty=0.0)
WEIGHT = 3.0


@pytest.fixture(scope="module")
def model():
    tokenizer = train_byte_bpe_tokenizer(["You pick up the red cup.", "Assistant: User: [ ] , What label? Keyframes:"], 280)
    return LionFSModel.from_config(LionFSConfig.from_dict(TINY_MODEL), tokenizer=tokenizer).eval()


def _dataset(model, train_dir, weight):
    recipe = FrameRecipe.for_model(model)
    sampler = ThinkingSampler(model.formatter, model.vision.grid_side, ThinkingConfig("answers", KF, RegionConfig()),
                              4, processor=recipe.general, detail_weight=weight)
    return StreamDataset(synth_examples(train_dir, FPS, questions=True), model.formatter, recipe, thinking=sampler), recipe


def test_only_detail_answer_targets_on_forks_are_weighted(model, train_dir):
    dataset, _ = _dataset(model, train_dir, WEIGHT)
    weighted_episodes = 0
    for index, example in enumerate(dataset.examples):
        sample = dataset[index]["thinking"]
        heavy = sample.label_weights == WEIGHT
        assert torch.all((sample.label_weights == 1.0) | heavy)
        assert torch.all(sample.branch_ids[heavy] > 0)  # forks only, never the main context
        assert torch.all(sample.labels[heavy] != model.config.stream.ignore_index)  # learned targets only
        details = [m["content"] for m in to_messages(example) if m.get("question_kind") == DETAIL]
        # Each weighted fork learns exactly one detail answer: its text (then EOS).
        said = [model.tokenizer.decode(sample.labels[heavy & (sample.branch_ids == fork)], skip_special_tokens=True)
                for fork in sample.branch_ids[heavy].unique().tolist()]
        assert sorted(text.strip() for text in said) == sorted(details)
        weighted_episodes += bool(details)
    assert weighted_episodes > 0, "the fixture episodes have no detail question: the test would prove nothing"


def test_weight_scales_the_lm_loss_of_those_targets(model, train_dir):
    heavy_set, recipe = _dataset(model, train_dir, WEIGHT)
    plain_set, _ = _dataset(model, train_dir, 1.0)
    index = next(i for i in range(len(heavy_set)) if bool((heavy_set[i]["thinking"].label_weights != 1).any()))
    collator = StreamCollator(pad_id=model.tokenizer.pad_token_id, ignore_index=model.config.stream.ignore_index)
    heavy = prepare_model_inputs(collator([heavy_set[index]]), recipe)
    plain = prepare_model_inputs(collator([plain_set[index]]), recipe)
    assert "label_weights" not in plain  # weight 1: the batch (and the loss) are what they were
    assert torch.equal(heavy["input_ids"], plain["input_ids"]) and torch.equal(heavy["labels"], plain["labels"])
    with torch.no_grad():
        base, weighted = model(**plain), model(**heavy)
    labels, ignore = plain["labels"], model.config.stream.ignore_index
    ce = F.cross_entropy(base.logits.flatten(0, 1).float(), labels.flatten(), ignore_index=ignore, reduction="none")
    mask = (heavy["label_weights"] == WEIGHT).flatten()
    extra = (WEIGHT - 1.0) * ce[mask].sum() / (labels != ignore).sum()
    assert float(extra) > 0
    torch.testing.assert_close(weighted.lm_loss, base.lm_loss + extra)
    torch.testing.assert_close(weighted.stream_loss, base.stream_loss)  # frame decisions keep their weight


def test_detail_answer_weight_is_checked(train_dir):
    data = tiny_config_dict(train_dir)
    data["training"]["detail_answer_weight"] = 2.0
    with pytest.raises(ValueError, match="detail_answer_weight .* needs"):
        TrainConfig.from_dict(data)  # data.thinking 'none': there is no fork to weight
    data["data"]["thinking"] = "answers"
    assert TrainConfig.from_dict(data).training.detail_answer_weight == 2.0
    data["training"]["detail_answer_weight"] = 0.0
    with pytest.raises(ValueError, match="must be > 0"):
        TrainConfig.from_dict(data)
