"""Training samples with the thinking template (data.thinking): layout, labels, forks, and 'none' unchanged."""
import copy
import dataclasses

import numpy as np
import pytest
import torch

from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.data.stream_examples import to_messages
from lionfs_ros.data.synth_streams import synth_examples
from lionfs_ros.engine import EngineConfig, LocalSlowThinker, SlowThinkRequest
from lionfs_ros.engine.context import ContextFork
from lionfs_ros.engine.lm_state import DynamicLMState
from lionfs_ros.model import LionFSConfig, LionFSModel
from lionfs_ros.model.configuration_lionfs import KeyframeConfig, RegionConfig, ThinkingConfig
from lionfs_ros.model.crop_reader import CropReader
from lionfs_ros.model.keyframe_tokens import pool_runs
from lionfs_ros.model.thinking_template import build_thinking_inputs
from lionfs_ros.model.tokenization import train_byte_bpe_tokenizer
from lionfs_ros.train.config import TrainConfig
from lionfs_ros.data.frame_cache import load_frames
from lionfs_ros.train.dataset import StreamCollator, StreamDataset
from lionfs_ros.train.region_tags import SLOTS_KEY, insert_region_tags
from lionfs_ros.train.thinking import ThinkingSampler, novelty_features, thinks
from lionfs_ros.train.trainer import prepare_model_inputs

from train_helpers import TINY_MODEL, tiny_config_dict

FPS = 2.0
KF = KeyframeConfig(num_keyframes=2, history_frames=4, grid_sizes=(2, 4), regions_on="none", min_novelty=0.0)
NOVELTY_CELLS = 4
READER_CLASSES = {"label": ("none", "K", "Q", "Z"), "shape": ("cube", "ball", "cone"), "colour": ("red", "blue", "green")}


@pytest.fixture(scope="module")
def model():
    tokenizer = train_byte_bpe_tokenizer(["You pick up the red cup.", "Assistant: User: [ ] , What colour? Keyframes:"], 280)
    return LionFSModel.from_config(LionFSConfig.from_dict(TINY_MODEL), tokenizer=tokenizer).eval()


@pytest.fixture(scope="module")
def crop_tower_model(model):
    """The tiny model with a crop tower of its own (``crop.source: tower``), its weights moved off the general tower's."""
    other = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in other.add_crop_tower(trainable=False).parameters():
            param.add_(0.05 * torch.randn_like(param))
    return other


@pytest.fixture(scope="module")
def reader_model(crop_tower_model):
    """The crop tower model with a crop reader (random heads: its tags differ from crop to crop)."""
    other = copy.deepcopy(crop_tower_model)
    torch.manual_seed(2)
    other.add_crop_reader(CropReader(other.crop_vision.hidden_size, 2, READER_CLASSES))
    return other


def _dataset(model, train_dir, mode, config=KF, regions=None, question="before"):
    examples = synth_examples(train_dir, FPS, questions=True, limit=1)
    recipe = FrameRecipe.for_model(model)
    thinking = None if mode == "none" else ThinkingConfig(mode, config, regions or RegionConfig(), question)
    sampler = None if mode == "none" else ThinkingSampler(model.formatter, model.vision.grid_side, thinking,
                                                          NOVELTY_CELLS, processor=recipe.general)
    return StreamDataset(examples, model.formatter, recipe, thinking=sampler), recipe


def _questions(messages):
    """Each message's question to restate: the last user turn before an answer to a question, else None."""
    out, last = [], None
    for message in messages:
        last = message["content"] if message["role"] == "user" else last
        out.append(last if message.get("answers_question") else None)
    return out


@pytest.mark.parametrize("mode, question", [("answers", "before"), ("all", "before"), ("answers", "after")])
def test_template_sits_on_a_fork_before_each_thought_answer(model, train_dir, mode, question):
    dataset, recipe = _dataset(model, train_dir, mode, question=question)
    example = dataset.examples[0]
    messages = to_messages(example)
    plain = model.formatter.encode(messages)
    item = dataset[0]
    sample, ignore = item["thinking"], model.config.stream.ignore_index
    thought = [(m, span, q) for m, span, q in zip(messages, plain.spans, _questions(messages)) if thinks(m, mode)]
    assert thought and sample.branch_ids.max() == len(thought)
    if mode == "answers":
        assert len(thought) == sum(t.answer_of is not None for t in example.turns)
    # The main context is the plain sample, ids and positions, with the thought answers not learned there.
    main = sample.branch_ids == 0
    assert torch.equal(sample.input_ids[main], plain.input_ids)
    assert torch.equal(sample.position_ids[main], torch.arange(plain.input_ids.numel()))
    frames = load_frames(example, recipe).general
    for k, (message, (start, stop), asked) in enumerate(thought, start=1):
        fork = sample.branch_ids == k
        ids, labels = sample.input_ids[fork], sample.labels[fork]
        after_stream = bool(plain.input_ids[start - 1] == model.token_ids.placeholder)
        body = model.formatter.assistant_body_ids(message["content"])
        keyframes = sample.keyframes  # the clip frames the runs pool (shared by forks)
        trigger = int((plain.input_ids[:start] == model.token_ids.placeholder).sum()) // model.tokens_per_frame - 1
        chosen = dataset.thinking.keyframes_at(frames, trigger, _novelty(frames))
        assert chosen[-1] == trigger and all(c in keyframes for c in chosen)
        # The fork's ids are exactly the engine's template on a live context for those keyframes, then the answer.
        restate = asked if question == "after" else None
        with torch.no_grad():
            engine = build_thinking_inputs(model, list(frames[chosen]), after_stream=after_stream, config=KF,
                                           restate=restate)
        template = engine.input_ids.tolist()
        assert ids.tolist() == template + body
        if question == "after":  # the question right before the answer's header, as in a plain turn
            restated = model.formatter.user_ids(asked, after_stream=False) + model.formatter.assistant_header_ids(False)
            assert asked and template[-len(restated):] == restated
        assert sample.position_ids[fork].tolist() == list(range(start, start + len(template) + len(body)))
        # Labels: never a template token; the answer is learned from the template's last token to EOS.
        assert (labels[: len(template) - 1] == ignore).all()
        assert labels[len(template) - 1:].tolist() == body + [ignore]
        assert sample.template_mask[fork].sum() == engine.accounting.grid + engine.accounting.box
        assert (sample.labels[main][start:stop] == ignore).all()  # the committed copy is not learned
        # The trigger frame's decision keeps the plain target.
        assert sample.labels[main][start - 1] == plain.labels[start - 1]
    assert not sample.template_mask[main].any()


def _novelty(frames):
    return novelty_features(frames, NOVELTY_CELLS)


def test_placeholders_equal_the_embeddings_filled_and_are_never_visual(model, train_dir):
    dataset, recipe = _dataset(model, train_dir, "all")
    collator = StreamCollator(pad_id=model.tokenizer.pad_token_id, ignore_index=model.config.stream.ignore_index)
    batch = collator([dataset[0], dataset[0]])
    inputs = prepare_model_inputs(batch, recipe)
    runs = inputs["keyframe_runs"]
    assert sum(r.num_tokens for r in runs) == int(inputs["template_mask"].sum())
    assert inputs["keyframe_general"].shape[0] == 2 * len(dataset[0]["thinking"].keyframes)
    with torch.no_grad():
        frame_embeds = model.embed_frames(inputs["general"], inputs["ego"])
        grids = model.patch_grid(inputs["keyframe_general"])
        filled = model.project_general(pool_runs(grids, runs))
        embeds, visual = model.joint_embed(inputs["input_ids"], frame_embeds, inputs["template_mask"], filled)
    placeholders = inputs["input_ids"] == model.token_ids.placeholder
    assert torch.equal(visual, placeholders & ~inputs["template_mask"])
    assert filled.shape[0] == int(inputs["template_mask"].sum())
    torch.testing.assert_close(embeds[inputs["template_mask"]], filled)
    out = model(**inputs)  # the full training forward: masks, forks, template fill
    assert torch.isfinite(out.loss)


def test_a_fork_is_invisible_to_later_main_tokens(model, train_dir):
    """Main-context logits with forks equal the plain sample's (the template never leaks into the main context)."""
    dataset, recipe = _dataset(model, train_dir, "all")
    item = dataset[0]
    plain = model.formatter.encode(to_messages(dataset.examples[0]))
    collator = StreamCollator(pad_id=model.tokenizer.pad_token_id, ignore_index=model.config.stream.ignore_index)
    inputs = prepare_model_inputs(collator([item]), recipe)
    with torch.no_grad():
        forked = model(**inputs).logits[0][item["thinking"].branch_ids == 0]
        frame_embeds = model.embed_frames(inputs["general"], inputs["ego"])
        reference = model(plain.input_ids[None], frame_embeds=frame_embeds).logits[0]
    torch.testing.assert_close(forked, reference, atol=1e-4, rtol=1e-4)


# Box tokens re-encoded from crops, regions proposed on colours (the slow path of the shipped model).
KF_CROP = KeyframeConfig(num_keyframes=2, history_frames=4, grid_sizes=(2,), regions_on="trigger", max_regions=2, tiles=2,
                         box_grid=2, box_source="crop", min_novelty=0.0)
PIXEL_REGIONS = RegionConfig(features="pixels", min_score=0.0)
KF_TAGS = dataclasses.replace(KF_CROP, region_tags=True)


@pytest.mark.parametrize("config, regions, question, tower", [
    (KF, None, "before", False), (KF_CROP, PIXEL_REGIONS, "before", False), (KF_CROP, PIXEL_REGIONS, "after", False),
    (KF_CROP, PIXEL_REGIONS, "after", True), (KF_TAGS, PIXEL_REGIONS, "after", "reader")],
    ids=["grid", "crop", "crop-question-after", "crop-tower", "crop-tags"])
def test_fork_logits_equal_the_engines_template_on_a_cached_context(model, train_dir, monkeypatch, request, config,
                                                                     regions, question, tower):
    """Each fork of a training sample (a batch of two, token dropping on) gives the logits the engine gets:
    the context up to the turn in a KV cache, then the engine's slow thinker's prompt (the template, and with
    ``question: after`` the question restated) and the answer fed on a fork of it, token by token. ``tower``:
    the model's crops are read by a crop tower of its own (the box tokens differ from the general tower's);
    ``reader``: and its crop reader's tags follow each region's box tokens (``keyframes.region_tags``:
    inserted by ``train.region_tags`` in training, written by the engine's template)."""
    model = request.getfixturevalue({True: "crop_tower_model", "reader": "reader_model"}[tower]) if tower else model
    dataset, recipe = _dataset(model, train_dir, "all", config, regions, question)
    # The model as training leaves it: it records the template (the engine reads it from there).
    monkeypatch.setattr(model.config, "thinking", ThinkingConfig("all", config, regions or RegionConfig(), question))
    thinker = LocalSlowThinker(model, EngineConfig(kv_budget_tokens=1024))
    item = dataset[0]
    messages = to_messages(dataset.examples[0])
    plain = model.formatter.encode(messages)
    collator = StreamCollator(pad_id=model.tokenizer.pad_token_id, ignore_index=model.config.stream.ignore_index)
    inputs = prepare_model_inputs(collator([item, item]), recipe)
    assert (SLOTS_KEY in inputs) == config.region_tags
    crops = inputs.get("keyframe_crops")
    if config.region_tags:
        inputs = insert_region_tags(model, inputs)
    n = int(inputs["attention_mask"][0].sum())
    sample = {name: inputs[name][0, :n] for name in ("input_ids", "labels", "branch_ids", "position_ids")}
    frames = item["frames"].general
    features = novelty_features(frames, NOVELTY_CELLS)
    tags = 0
    with torch.no_grad():
        logits = model(**inputs).logits
        torch.testing.assert_close(logits[0], logits[1])
        frame_embeds = model.embed_frames(inputs["general"], inputs["ego"])
        forks = restated = 0
        for message, (start, _), asked in zip(messages, plain.spans, _questions(messages)):
            frames_before = int((plain.input_ids[:start] == model.token_ids.placeholder).sum()) // model.tokens_per_frame
            if not thinks(message, "all") or frames_before == 0:
                continue
            forks += 1
            fork = sample["branch_ids"] == forks
            positions = sample["position_ids"][fork]
            assert positions.tolist() == list(range(start, start + len(positions)))  # a fork continues its context
            cache = model.new_cache()
            context = plain.input_ids[:start]
            model(context[None], frame_embeds=frame_embeds[:frames_before], past_key_values=cache)
            state = DynamicLMState(model, cache.fork())
            chosen = dataset.thinking.keyframes_at(frames, frames_before - 1, features)
            after_stream = bool(plain.input_ids[start - 1] == model.token_ids.placeholder)
            request = SlowThinkRequest(keyframes=[(rgb, 0.0) for rgb in frames[chosen]], context=[], query=asked,
                                       fork=ContextFork(state, after_stream))
            engine = thinker.prompt(request)
            restated += any(what == "question" for what, _ in engine.pieces)
            tags += sum(what == "tag" and n > 0 for what, n in engine.pieces)
            if regions:
                assert engine.accounting.box == 2 * 2 * 2, "two regions on the trigger, 2x2 crop tokens each"
            steps = [state.feed(engine.input_ids.tolist(), engine.embeds, engine.visual_mask).reshape(-1)]
            assert sample["input_ids"][fork][:engine.input_ids.numel()].tolist() == engine.input_ids.tolist()
            body = sample["input_ids"][fork][engine.input_ids.numel():].tolist()
            steps += [state.feed([token]).reshape(-1) for token in body[:-1]]  # greedy decoding's feeds
            trained = logits[0][fork][engine.input_ids.numel() - 1:-1]  # template's last token .. answer's last but one
            torch.testing.assert_close(trained, torch.stack(steps), atol=1e-4, rtol=1e-4)
            labels = sample["labels"][fork][engine.input_ids.numel() - 1:-1]
            assert labels.tolist() == body  # the logits compared are exactly those the answer is learned on
    assert forks == int(sample["branch_ids"].max()) > 0
    assert (restated > 0) == (question == "after")  # some fork answers a question, so the layouts differ
    assert tags == (2 * forks if config.region_tags else 0)  # each fork: a tag after each of its 2 regions
    if regions:
        assert crops.shape[0] == 2 * (2 + 2 * 4) * forks  # two items; a fork: 2 regions + 2 x 4 tiles
    if tower:  # so the equality above fails if training or the engine read crops with the general tower
        with torch.no_grad():
            assert not torch.allclose(model.crop_grid(crops), model.patch_grid(crops))


def test_thinking_none_leaves_samples_byte_identical(model, train_dir):
    dataset, _ = _dataset(model, train_dir, "none")
    item = dataset[0]
    plain = model.formatter.encode(to_messages(dataset.examples[0]))
    assert set(item) == {"input_ids", "labels", "frames"}
    assert item["input_ids"].numpy().tobytes() == plain.input_ids.numpy().tobytes()
    assert item["labels"].numpy().tobytes() == plain.labels.numpy().tobytes()
    config = TrainConfig.from_dict(tiny_config_dict(train_dir))
    assert config.data.thinking == "none"


def test_thinking_config_refuses_feature_caches(train_dir):
    data = tiny_config_dict(train_dir)
    data["data"].update(thinking="all", frame_cache="features")
    with pytest.raises(ValueError, match="thinking needs keyframe pixels"):
        TrainConfig.from_dict(data)


def test_keyframes_follow_the_engine_rule_on_the_proxy(model, train_dir):
    dataset, recipe = _dataset(model, train_dir, "all", KeyframeConfig(num_keyframes=3, history_frames=5,
                                                                       regions_on="none", min_novelty=2.0))
    frames = load_frames(dataset.examples[0], recipe).general
    # A novelty nobody reaches: the trigger alone, as the engine does on a static scene.
    assert dataset.thinking.keyframes_at(frames, 6, _novelty(frames)) == [6]
    assert np.array_equal(recipe.general.normalize(torch.from_numpy(frames[:1])).numpy(),
                          model.preprocess(frames[:1]).numpy())  # keyframe pixels: what the engine's preprocess gives


def test_thinking_question_is_checked(train_dir):
    from lionfs_ros.model.configuration_lionfs import ConfigError

    with pytest.raises(ConfigError, match="thinking.question"):
        ThinkingConfig("answers", KF, question="later").validate()
    with pytest.raises(ConfigError, match="mode 'none' never uses"):
        ThinkingConfig("none", KF, question="after").validate()
    data = tiny_config_dict(train_dir)
    data["data"].update(thinking="answers", thinking_question="later")
    with pytest.raises(ValueError, match="data.thinking_question"):
        TrainConfig.from_dict(data)
    data["data"].update(thinking="none", thinking_question="after")  # the equal-budget control of a question-after run
    assert TrainConfig.from_dict(data).data.thinking_question == "after"
