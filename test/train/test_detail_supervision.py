"""Reading supervision on the slow path's forks: training.detail_answer_weight (detail answers weigh more in the LM
loss) and data.extra_detail_questions (more detail questions, on forks only); the main context never changes."""
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
from lionfs_ros.data.synth_objects import DETAIL, labelled_objects
from lionfs_ros.train.thinking import ThinkingSampler
from lionfs_ros.train.trainer import prepare_model_inputs

from train_helpers import TINY_MODEL, tiny_config_dict

FPS = 2.0
KF = KeyframeConfig(num_keyframes=2, history_frames=4, grid_sizes=(2,), regions_on="none", min_novelty=0.0)
WEIGHT = 3.0
KF_REGIONS = KeyframeConfig(num_keyframes=2, history_frames=4, grid_sizes=(2,), regions_on="trigger", max_regions=2,
                            box_grid=2, box_source="crop", min_novelty=0.0)
PIXEL_REGIONS = RegionConfig(features="pixels", min_score=0.0)
EXTRA = 3


@pytest.fixture(scope="module")
def model():
    tokenizer = train_byte_bpe_tokenizer(["You pick up the red cup.", "Assistant: User: [ ] , What label? Keyframes:"], 280)
    return LionFSModel.from_config(LionFSConfig.from_dict(TINY_MODEL), tokenizer=tokenizer).eval()


def _dataset(model, train_dir, weight, extra=0):
    recipe = FrameRecipe.for_model(model)
    thinking = ThinkingConfig("answers", KF_REGIONS, PIXEL_REGIONS) if extra else ThinkingConfig("answers", KF, RegionConfig())
    sampler = ThinkingSampler(model.formatter, model.vision.grid_side, thinking, 4, processor=recipe.general,
                              detail_weight=weight, extra_questions=extra)
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


def _fork_texts(model, sample, fork):
    """What fork ``fork`` learns, and all it holds, as text."""
    on = sample.branch_ids == fork
    learned = on & (sample.labels != model.config.stream.ignore_index)
    return (model.tokenizer.decode(sample.labels[learned], skip_special_tokens=True).strip(),
            model.tokenizer.decode(sample.input_ids[on], skip_special_tokens=True))


def test_extra_detail_questions_sit_on_forks_only(model, train_dir):
    base, recipe = _dataset(model, train_dir, 1.0, extra=0)
    extra, _ = _dataset(model, train_dir, WEIGHT, extra=EXTRA)
    added = 0
    for index, example in enumerate(extra.examples):
        plain, more = base[index]["thinking"], extra[index]["thinking"]
        # The main context (ids, labels, positions) is the sample without the extra forks.
        for column in ("input_ids", "labels", "position_ids"):
            assert torch.equal(getattr(more, column)[more.branch_ids == 0], getattr(plain, column)[plain.branch_ids == 0])
        objects = labelled_objects(example.source)
        said = {o.answer: o.question for frame in objects for o in frame}
        answers = [m["content"] for m in to_messages(example) if m.get("answers_question")]
        new = int(more.branch_ids.max()) - int(plain.branch_ids.max())
        assert 0 <= new <= EXTRA
        extra_forks = []
        for fork in range(1, int(more.branch_ids.max()) + 1):
            learned, text = _fork_texts(model, more, fork)
            if learned in answers:
                answers.remove(learned)  # an episode's own answer
                continue
            assert learned in said and said[learned] in text  # its question restated on its fork
            assert torch.all(more.label_weights[(more.branch_ids == fork) & (more.labels != -100)] == WEIGHT)
            extra_forks.append(fork)
        assert len(extra_forks) >= new  # a label answer may also be an episode answer's text
        added += new
    assert added > 0, "no extra question was asked on the fixture episodes: the test would prove nothing"
    collator = StreamCollator(pad_id=model.tokenizer.pad_token_id, ignore_index=model.config.stream.ignore_index)
    with torch.no_grad():
        out = model(**prepare_model_inputs(collator([extra[0], extra[1]]), recipe))
    assert torch.isfinite(out.loss)


def test_extra_detail_questions_are_checked(train_dir):
    data = tiny_config_dict(train_dir)
    data["data"].update(thinking="answers", extra_detail_questions=2)
    with pytest.raises(ValueError, match="extra_detail_questions .* needs"):
        TrainConfig.from_dict(data)  # no proposed regions to ask about
    data["data"]["keyframes"] = {"regions_on": "trigger", "max_regions": 2}
    assert TrainConfig.from_dict(data).data.extra_detail_questions == 2
    data["data"]["extra_detail_questions"] = -1
    with pytest.raises(ValueError, match="must be >= 0"):
        TrainConfig.from_dict(data)


def test_question_last_lays_the_asked_objects_region_out_last(model, train_dir):
    """``keyframes.region_order: question_last``: on a fork about an object (an extra detail question here), the
    trigger keyframe's region holding it is the last box run of that keyframe; the other regions keep their order, the
    ids and labels are those of the proposer's order. Over the fixture episodes some fork moved a region."""
    from dataclasses import replace

    recipe = FrameRecipe.for_model(model)
    made = {}
    for order in ("proposer", "question_last"):
        kf = replace(KF_REGIONS, max_regions=3, region_tags=True, region_order=order)
        sampler = ThinkingSampler(model.formatter, model.vision.grid_side, ThinkingConfig("answers", kf, PIXEL_REGIONS),
                                  4, processor=recipe.general, extra_questions=EXTRA)
        assert sampler.needs_objects
        made[order] = StreamDataset(synth_examples(train_dir, FPS, questions=True), model.formatter, recipe,
                                    thinking=sampler)
    moved = 0
    for index, example in enumerate(made["proposer"].examples):
        plain, ordered = made["proposer"][index]["thinking"], made["question_last"][index]["thinking"]
        assert torch.equal(plain.input_ids, ordered.input_ids) and torch.equal(plain.labels, ordered.labels)
        objects = [o for frame in labelled_objects(example.source) for o in frame]
        groups = [_box_groups(sample.runs) for sample in (plain, ordered)]  # each fork's trigger-keyframe regions
        assert len(groups[0]) == len(groups[1])
        for before, after in zip(*groups):
            if before != after:  # one region moved to the end, the others in their order; it holds an object
                assert after == before[:before.index(after[-1])] + before[before.index(after[-1]) + 1:] + after[-1:]
                assert any(o.centre_in(after[-1].box) for o in objects)
                moved += 1
    assert moved > 0, "no fork moved a region on the fixture episodes: the test would prove nothing"


def _box_groups(runs) -> list[list]:
    """The box runs of a sample, one list per run of consecutive box runs (one fork's regions)."""
    groups, current = [], []
    for run in runs:
        if run.kind == "box":
            current.append(run)
        elif current:
            groups, current = groups + [current], []
    return groups + ([current] if current else [])


def test_question_last_region_order_needs_the_tags_and_the_synthetic_world(train_dir):
    from lionfs_ros.model.configuration_lionfs import ConfigError
    from lionfs_ros.train.config import TrainConfigError

    data = tiny_config_dict(train_dir)
    data["data"].update(format="videollm_online", videos=str(train_dir), keyframes={
        "box_source": "crop", "region_tags": True, "region_order": "question_last"})
    with pytest.raises(TrainConfigError, match="region_order 'question_last'"):
        TrainConfig.from_dict(data)
    with pytest.raises(ConfigError, match="needs keyframes.region_tags"):
        KeyframeConfig(box_source="crop", region_order="question_last").validate()
    with pytest.raises(ConfigError, match="region_order"):
        KeyframeConfig(box_source="crop", region_tags=True, region_order="random").validate()


def test_question_candidates_swap_in_the_asked_objects_region(model, train_dir):
    """``keyframes.question_candidates``: a fork about an object (an extra detail question here) that none of the
    trigger keyframe's first ``max_regions`` proposals holds, but one of its first ``question_candidates`` does, gets
    that proposal in the last place after the first ``max_regions - 1``; otherwise the first ``max_regions`` with the
    one holding it last, as without candidates. Over the fixture episodes some fork swapped a region in."""
    from dataclasses import replace

    recipe = FrameRecipe.for_model(model)
    kf = replace(KF_REGIONS, max_regions=2, region_tags=True, region_order="question_last", question_candidates=6)
    sampler = ThinkingSampler(model.formatter, model.vision.grid_side, ThinkingConfig("answers", kf, PIXEL_REGIONS),
                              4, processor=recipe.general, extra_questions=EXTRA)
    narrow = ThinkingSampler(model.formatter, model.vision.grid_side,
                             ThinkingConfig("answers", replace(kf, question_candidates=0), PIXEL_REGIONS), 4,
                             processor=recipe.general, extra_questions=EXTRA)
    data = StreamDataset(synth_examples(train_dir, FPS, questions=True), model.formatter, recipe, thinking=sampler)
    swapped = 0
    for index, example in enumerate(data.examples):
        item = data[index]
        thought, frames = item["thinking"], item["frames"].general
        objects = [o for frame in labelled_objects(example.source) for o in frame]
        for chosen, boxes in _forks(thought):
            proposed = [(r.x0, r.y0, r.x1, r.y1) for r in narrow._regions(frames, chosen)[-1]]  # the first 2
            got = [run.box for run in boxes]
            assert len(got) == len(proposed) <= 2
            if got[-1] in proposed:  # as without candidates: the first two, one of them moved last or not
                assert sorted(got) == sorted(proposed)
            else:  # a later proposal in the last place, holding an object
                assert got[:-1] == proposed[:-1] and any(o.centre_in(got[-1]) for o in objects)
                swapped += 1
    assert swapped > 0, "no fork swapped a region in on the fixture episodes: the test would prove nothing"


def _forks(thought) -> list[tuple[list[int], list]]:
    """Each fork's keyframes (clip frame indices, oldest first) and its trigger keyframe's box runs, from a sample's
    runs: a fork's grid runs, then its box runs (``regions_on: trigger``)."""
    forks, slots, boxes = [], [], []
    for run in [*thought.runs, None]:
        if run is not None and run.kind == "box":
            boxes.append(run)
            continue
        if boxes:
            forks.append(([thought.keyframes[s] for s in dict.fromkeys(slots)], boxes))
            slots, boxes = [], []
        if run is not None:
            slots.append(run.keyframe)
    return forks
