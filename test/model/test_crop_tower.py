"""The slow path's crop tower (``crop.source: tower``): its own weights, saved and loaded with the model; the
general tower (the fast path's) stays as it was. Its crop reader (``crop.reader_classes``) and the region tags
it writes into the thinking template (``keyframes.region_tags``)."""
import json
from dataclasses import replace
from itertools import product

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lionfs_ros.model import LionFSModel
from lionfs_ros.model.configuration_lionfs import ConfigError, CropConfig, KeyframeConfig
from lionfs_ros.model.crop_reader import CropReader, parse_region_tag, region_tag
from lionfs_ros.model.regions import Region
from lionfs_ros.model.thinking_template import build_thinking_inputs, thinking_token_bound

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


READER_CLASSES = {"label": ("none", "K", "Q"), "shape": ("cube", "ball"), "colour": ("red", "blue")}


def _with_reader(build, seed: int, classes: dict = READER_CLASSES, parts: dict | None = None):
    """A tiny model with a frozen crop tower and a crop reader of ``classes`` (heads drawn after ``seed``)."""
    model = build(fused=False)
    model.add_crop_tower(trainable=False)
    torch.manual_seed(seed)
    model.add_crop_reader(CropReader(model.crop_vision.hidden_size, 2, classes, parts))
    return model


def test_a_crop_reader_is_saved_with_the_model_and_writes_a_tag_after_each_region(build, tmp_path):
    """``crop.reader_classes`` + ``keyframes.region_tags``: the reader's weights and classes round-trip through a
    model directory, and the template has each region's tag text right after its box tokens, else unchanged."""
    model = _with_reader(build, 3)
    tagged_kf = KeyframeConfig(num_keyframes=1, grid_sizes=(2,), box_grid=2, max_regions=2, box_source="crop",
                               region_tags=True)
    model.config.thinking.keyframes = tagged_kf
    model.save_pretrained(tmp_path / "m")
    assert any(k.startswith("crop_reader.heads.label") for k in load_file(tmp_path / "m" / "model.safetensors"))
    loaded = LionFSModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.crop.reader_classes == {k: list(v) for k, v in READER_CLASSES.items()}
    assert loaded.config.thinking.keyframes.region_tags
    crops = model.preprocess(random_frames(6, 4))
    with torch.no_grad():
        tags = model.region_tags(model.crop_grid(crops))
        assert loaded.region_tags(loaded.crop_grid(crops)) == tags
        logits = model.crop_reader(model.crop_grid(crops))
        torch.testing.assert_close(loaded.crop_reader(loaded.crop_grid(crops)), logits)
    assert len(set(tags)) > 1, "random heads read the random crops differently: the round trip proves little otherwise"
    assert all(t in model.crop_reader.all_tags() for t in tags)

    frame = random_frames(1, 5, size=64)[0]
    regions = [[Region(0.1, 0.1, 0.4, 0.5, "salient", 0.9), Region(0.5, 0.4, 0.9, 0.9, "motion", 0.8)]]
    with torch.no_grad():
        tagged = build_thinking_inputs(loaded, [frame], regions=regions)
        plain = build_thinking_inputs(loaded, [frame], regions=regions, config=replace(tagged_kf, region_tags=False))
    what = [w for w, _ in tagged.pieces]
    first = what.index("regions_open")
    assert what[first + 1:first + 5] == ["box", "tag", "box", "tag"] and what[first + 5] == "keyframe_close"
    ends = np.cumsum([n for _, n in tagged.pieces])
    ids = tagged.input_ids.tolist()
    written = [ids[ends[i - 1]:ends[i]] for i, w in enumerate(what) if w == "tag"]
    read = [r.tag for r in tagged.regions[0]]
    assert written == [loaded.formatter.text_ids(" " + tag) for tag in read] and all(read)
    assert [r.as_tuple()[4] for r in tagged.regions[0]] == [f"salient: {read[0]}", f"motion: {read[1]}"]
    without = [t for i, w in enumerate(what) if w != "tag" for t in ids[ends[i] - tagged.pieces[i][1]:ends[i]]]
    assert without == plain.input_ids.tolist()  # the tags are the only difference
    assert torch.equal(tagged.embeds, plain.embeds) and plain.regions[0][0].tag == ""
    longest_tag = max(len(loaded.formatter.text_ids(t)) for t in loaded.crop_reader.all_tags())
    added = thinking_token_bound(loaded, tagged_kf) - thinking_token_bound(loaded, replace(tagged_kf, region_tags=False))
    assert added == tagged_kf.max_regions * longest_tag


def _read_as(model, tags: list[str]) -> None:
    """The model's reader tags each distinct crop with the next of ``tags``, in the order the crops are first read
    (a crop is known by its patch grid: read again in another batch, it differs by float rounding only)."""
    seen: list[torch.Tensor] = []

    def tag_of(grid: torch.Tensor) -> str:
        index = next((i for i, g in enumerate(seen) if torch.allclose(g, grid, atol=1e-4)), len(seen))
        if index == len(seen):
            seen.append(grid)
        return tags[index]
    model.region_tags = lambda grids: [tag_of(g) for g in grids]


def test_question_last_lays_the_region_the_question_is_about_out_last(build):
    """``keyframes.region_order: question_last``: the trigger keyframe's region whose tag shares the most words with
    the question moves to the end of its regions; the template is the one the proposer's order would give with that
    region proposed last (the same tags, and the same crop features moved with their box runs)."""
    from lionfs_ros.model.region_order import matched_index

    model = _with_reader(build, 3)
    kf = KeyframeConfig(num_keyframes=1, grid_sizes=(2,), box_grid=2, max_regions=3, box_source="crop",
                        region_tags=True)
    frame = random_frames(1, 5, size=64)[0]
    regions = [[Region(0.1, 0.1, 0.4, 0.5, "salient", 0.9), Region(0.5, 0.4, 0.9, 0.9, "motion", 0.8),
                Region(0.0, 0.6, 0.3, 0.95, "salient", 0.7)]]
    tags = [" blue ball labelled K", " red cube", " red ball labelled Q"]
    _read_as(model, tags)  # fixed tags (the random heads read most crops alike)
    question = "What letter is on the blue ball?"
    assert matched_index(question, tags) == 0
    with torch.no_grad():
        plain = build_thinking_inputs(model, [frame], regions=regions, config=kf)
        assert [r.tag for r in plain.regions[0]] == [t.strip() for t in tags]
        ordered = build_thinking_inputs(model, [frame], regions=regions, asked=question,
                                        config=replace(kf, region_order="question_last"))
        moved = build_thinking_inputs(model, [frame], regions=[regions[0][1:] + regions[0][:1]], config=kf)
        unasked = build_thinking_inputs(model, [frame], regions=regions, config=replace(kf, region_order="question_last"))
    assert [" " + r.tag for r in ordered.regions[0]] == tags[1:] + tags[:1]
    assert torch.equal(ordered.input_ids, moved.input_ids)
    torch.testing.assert_close(ordered.embeds, moved.embeds)  # the crops went through the tower in another batch
    assert not torch.equal(ordered.embeds, plain.embeds)  # the box runs' crop features moved too
    assert torch.equal(unasked.input_ids, plain.input_ids) and torch.equal(unasked.embeds, plain.embeds)  # no question
    with pytest.raises(ConfigError, match="region_order 'question_last' ranks the regions by their tags"):
        replace(kf, region_tags=False, box_source="grid", region_order="question_last").validate()


def test_question_candidates_let_the_question_pick_a_later_proposal(build):
    """``keyframes.question_candidates``: the trigger keyframe's first N proposals are read and the question picks
    among them; a pick past the first ``max_regions`` takes the last place after the first ``max_regions - 1``: the
    template is the one those regions, proposed so, would give. Without candidates the question picks among the first
    ``max_regions`` only."""
    from lionfs_ros.model.regions import RegionProposer

    model = _with_reader(build, 3)
    kf = KeyframeConfig(num_keyframes=1, grid_sizes=(2,), box_grid=2, max_regions=2, box_source="crop",
                        region_tags=True, region_order="question_last")
    frame = random_frames(1, 5, size=64)[0]
    proposed = [Region(0.1, 0.1, 0.4, 0.5, "salient", 0.9), Region(0.5, 0.4, 0.9, 0.9, "salient", 0.8),
                Region(0.0, 0.6, 0.3, 0.95, "salient", 0.7), Region(0.6, 0.0, 0.95, 0.3, "salient", 0.6)]
    tags = [" red cube", " green ball", " blue ball labelled K", " red ball labelled Q"]
    _read_as(model, tags)

    class Fixed(RegionProposer):  # the plug: the same proposals, best first, on every keyframe
        def propose(self, keyframes, grids, max_regions):
            return [proposed[:max_regions] for _ in keyframes]
    question = "What letter is on the blue ball?"
    with torch.no_grad():
        picked = build_thinking_inputs(model, [frame], asked=question, proposer=Fixed(),
                                       config=replace(kf, question_candidates=4))
        laid = build_thinking_inputs(model, [frame], regions=[[proposed[0], proposed[2]]],
                                     config=replace(kf, region_order="proposer"))
        narrow = build_thinking_inputs(model, [frame], asked=question, proposer=Fixed(), config=kf)
    assert [" " + r.tag for r in picked.regions[0]] == [tags[0], tags[2]]
    assert torch.equal(picked.input_ids, laid.input_ids)
    torch.testing.assert_close(picked.embeds, laid.embeds)
    assert [" " + r.tag for r in narrow.regions[0]] == [tags[0], tags[1]]  # "ball": the second of the first two
    with pytest.raises(ConfigError, match="question_candidates"):
        replace(kf, question_candidates=1).validate()  # fewer than max_regions
    with pytest.raises(ConfigError, match="question_candidates"):
        replace(kf, region_order="proposer", question_candidates=4).validate()


def test_region_tags_are_checked(build):
    with pytest.raises(ConfigError, match="region_tags reads the regions' crops"):
        KeyframeConfig(region_tags=True).validate()
    config = build(fused=False).config
    config.thinking.keyframes = KeyframeConfig(box_source="crop", region_tags=True)
    with pytest.raises(ConfigError, match="needs crop.reader_classes"):
        config.validate()
    with pytest.raises(ConfigError, match="crop.reader_classes is a crop tower's reader"):
        CropConfig("general", reader_classes=READER_CLASSES).validate()


def test_a_tag_reads_back_as_what_the_reader_read():
    """``parse_region_tag`` inverts ``region_tag`` over every tag a reader can write, multi-word names, parts and the
    ``nothing`` of a reader with ``none`` shapes (proposer crops) included."""
    classes = {"label": ("none", "K", "DB"), "shape": ("none", "cup", "tea cup", "box"),
               "colour": ("none", "red", "light blue"), "patch": ("none", "red", "light blue")}
    parts = {"tea cup": "lid", "box": "cap"}
    reader = CropReader(4, 1, classes, parts)
    tags = reader.all_tags()
    assert " nothing" in tags and " light blue tea cup labelled DB with light blue lid" in tags and " red cup" in tags
    assert " red cup with red lid" not in tags and " red box labelled K" in tags  # a cup has no part
    for colour, shape, label, patch in product(*classes.values()):
        read = {"label": label, "shape": shape, "colour": colour, "patch": patch}
        parsed = parse_region_tag(region_tag(read, parts), classes)
        if shape == "none":
            assert parsed == {name: "none" for name in read}
        else:  # a part's colour is written only for a shape with a part
            assert parsed == {**read, "patch": patch if shape in parts else "none"}
    assert len(tags) == len({region_tag(dict(zip(classes, v)), parts) for v in product(*classes.values())})
    with pytest.raises(ValueError, match="not a tag of this reader"):
        parse_region_tag("red sphere", classes)


def test_a_tag_names_the_part_and_its_colour():
    """The tag's part: `` with COLOUR NOUN`` after the label, the noun the reader's ``parts`` give the shape."""
    parts = {"bottle": "cap", "jar": "lid"}
    bottle = {"label": "SODA", "shape": "bottle", "colour": "white", "patch": "orange"}
    assert region_tag(bottle, parts) == " white bottle labelled SODA with orange cap"
    assert region_tag({**bottle, "label": "none", "shape": "jar", "patch": "green"}, parts) == " white jar with green lid"
    assert region_tag({**bottle, "patch": "none"}, parts) == " white bottle labelled SODA"  # no part read
    assert region_tag({**bottle, "shape": "cup"}, parts) == " white cup labelled SODA"  # a shape without a part
    assert region_tag(bottle) == region_tag({k: v for k, v in bottle.items() if k != "patch"}, parts) \
        == " white bottle labelled SODA"  # no part nouns, or no patch head: the 3-attribute tag
    assert region_tag({**bottle, "shape": "none"}, parts) == " nothing"


PART_CLASSES = {**READER_CLASSES, "shape": ("cube", "bottle"), "patch": ("none", "red", "green")}


def test_a_part_reader_is_saved_with_the_model_and_tags_the_parts_colour(build, tmp_path):
    """A reader with a ``patch`` head (``crop_pretraining.part_colour``): its fourth head and part nouns round-trip
    through a model directory, and its tags carry the part the heads read."""
    model = _with_reader(build, 5, PART_CLASSES, parts={"bottle": "cap"})
    model.config.thinking.keyframes = KeyframeConfig(box_grid=2, max_regions=2, box_source="crop", region_tags=True)
    model.save_pretrained(tmp_path / "m")
    assert any(k.startswith("crop_reader.heads.patch") for k in load_file(tmp_path / "m" / "model.safetensors"))
    loaded = LionFSModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.crop.reader_parts == {"bottle": "cap"} and loaded.crop_reader.attributes[-1] == "patch"
    crops = model.preprocess(random_frames(12, 6))
    with torch.no_grad():
        grids = loaded.crop_grid(crops)
        logits = loaded.crop_reader(grids)
        tags = loaded.region_tags(grids)
        torch.testing.assert_close(logits, model.crop_reader(model.crop_grid(crops)))
    assert tags == model.region_tags(model.crop_grid(crops))
    for i, tag in enumerate(tags):
        read = {name: PART_CLASSES[name][int(logits[name][i].argmax())] for name in PART_CLASSES}
        part = f" with {read['patch']} cap" if read["shape"] == "bottle" and read["patch"] != "none" else ""
        assert tag.endswith(part) and parse_region_tag(tag, PART_CLASSES)["patch"] == (read["patch"] if part else "none")
    assert any(" with " in tag for tag in tags), tags  # random heads: some crop reads a bottle with a part
    with pytest.raises(ConfigError, match="reader_parts names the parts"):
        replace(loaded.config.crop, reader_classes=READER_CLASSES).validate()


def test_a_reader_saved_with_three_attributes_loads_and_tags_as_before(build, tmp_path):
    """Rounds 8 and 9 saved readers without ``patch`` (and configs without ``reader_parts``): they load and write
    the tags they always wrote, `` COLOUR SHAPE[ labelled LABEL]``, and the same set of tags bounds the template."""
    model = _with_reader(build, 7)
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["crop"].pop("reader_parts") is None  # as an older model's config.json
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    loaded = LionFSModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.crop_reader.attributes == ("label", "shape", "colour") and loaded.crop_reader.parts == {}
    with torch.no_grad():
        grids = loaded.crop_grid(model.preprocess(random_frames(6, 8)))
        logits, tags = loaded.crop_reader(grids), loaded.region_tags(grids)
    best = {name: logits[name].argmax(dim=1).tolist() for name in READER_CLASSES}
    expected = []
    for i in range(len(tags)):
        label, shape, colour = (READER_CLASSES[name][best[name][i]] for name in ("label", "shape", "colour"))
        expected.append(f" {colour} {shape}" + ("" if label == "none" else f" labelled {label}"))
    assert tags == expected
    old = {f" {c} {s}" + ("" if lb == "none" else f" labelled {lb}") for lb, s, c in product(*READER_CLASSES.values())}
    assert set(loaded.crop_reader.all_tags()) == old
