"""The default region proposer finds what moved, or what stands out, with no weights."""
import numpy as np
import torch

from lionfs_ros.model.configuration_lionfs import RegionConfig
from lionfs_ros.model.regions import SaliencyMotionProposer, pool_box

SIDE, CELLS, WIDTH = 64, 8, 16


def textured(seed):
    return np.random.default_rng(seed).integers(90, 110, size=(SIDE, SIDE, 3), dtype=np.uint8)


def test_a_moving_square_is_a_motion_region():
    before, after = textured(0), textured(0)
    before[8:24, 8:24] = 250  # cells (1..2, 1..2)
    after[40:56, 32:48] = 250  # moved to cells (5..6, 4..5)
    grids = torch.zeros(2, CELLS, CELLS, WIDTH)  # flat features: only motion can tell
    regions = SaliencyMotionProposer(RegionConfig(motion_weight=1.0)).propose([before, after], grids, max_regions=2)
    assert regions[0] == []  # first keyframe: no motion reference, flat features
    top = regions[1][0]
    assert top.label == "motion" and top.score == 1.0
    boxes = [(r.x0, r.y0, r.x1, r.y1) for r in regions[1]]
    assert (0.5, 0.625, 0.75, 0.875) in boxes or (0.125, 0.125, 0.375, 0.375) in boxes  # new or old place
    assert all(0 <= v <= 1 for b in boxes for v in b)


def test_a_distinct_feature_is_a_salient_region():
    grid = torch.zeros(1, CELLS, CELLS, WIDTH)
    grid[0, 2, 5] = 3.0
    (regions,) = SaliencyMotionProposer().propose([textured(1)], grid, max_regions=3)
    assert len(regions) == 1 and regions[0].label == "salient"  # the rest is below min_score
    r = regions[0]
    assert (r.x0, r.y0, r.x1, r.y1) == (5 / 8, 2 / 8, 6 / 8, 3 / 8)
    pooled = pool_box(grid[0], r, box_grid=1)
    torch.testing.assert_close(pooled, grid[0, 2, 5][None])
    assert pool_box(grid[0], r, box_grid=2).shape == (4, WIDTH)


def test_region_settings_live_in_the_models_config(tmp_path):
    from lionfs_ros.model.configuration_lionfs import LionFSConfig, ThinkingConfig

    cfg = LionFSConfig(vision=LionFSConfig().vision, thinking=ThinkingConfig(regions=RegionConfig(min_score=0.4)))
    cfg.vision.config, cfg.llm.config = {"model_type": "siglip_vision_model"}, {"model_type": "llama"}
    cfg.save(tmp_path / "config.json")
    assert LionFSConfig.load(tmp_path / "config.json").thinking.regions == RegionConfig(min_score=0.4)
    data = cfg.to_dict()
    del data["thinking"]["regions"]  # a config.json written before regions were the model's
    assert LionFSConfig.from_dict(data).thinking.regions == RegionConfig()


def test_crop_windows_are_squares_inside_the_frame():
    from lionfs_ros.model.keyframe_tokens import crop_box, crop_window
    from lionfs_ros.model.thinking_template import tile_boxes

    # A 16 x 8 px box at the right edge of a 96 x 128 frame, 25% margin: a 24 px square, shifted inside.
    assert crop_window((0.875, 0.5, 1.0, 0.5833), 96, 128, margin=0.25, minimum=0.0) == (40, 104, 24, 24)
    assert crop_window((0.5, 0.5, 0.51, 0.51), 96, 128, margin=0.0, minimum=0.25) == (36, 53, 24, 24)  # at least 1/4
    rgb = np.arange(96 * 128 * 3, dtype=np.uint32).reshape(96, 128, 3).astype(np.uint8)
    assert np.array_equal(crop_box(rgb, (0.0, 0.0, 0.5, 0.5), 0.0, 0.0), rgb[:64, :64])  # a tile: squared, not stretched
    assert tile_boxes(2) == [(0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 1.0, 0.5), (0.0, 0.5, 0.5, 1.0), (0.5, 0.5, 1.0, 1.0)]


def test_the_proposer_option_round_trips_and_is_checked(tmp_path):
    import pytest

    from lionfs_ros.model.configuration_lionfs import ConfigError, LionFSConfig, ThinkingConfig
    from lionfs_ros.model.regions import ObjectScaleProposer, make_proposer

    regions = RegionConfig(proposer="object_scale", features="pixels", object_size=0.25, cell_grid=48)
    cfg = LionFSConfig(thinking=ThinkingConfig(regions=regions))
    cfg.vision.config, cfg.llm.config = {"model_type": "siglip_vision_model"}, {"model_type": "llama"}
    cfg.save(tmp_path / "config.json")
    loaded = LionFSConfig.load(tmp_path / "config.json").thinking.regions
    assert loaded == regions and isinstance(make_proposer(loaded), ObjectScaleProposer)
    assert isinstance(make_proposer(RegionConfig()), SaliencyMotionProposer)  # the default is unchanged
    with pytest.raises(ConfigError, match="regions.proposer"):
        RegionConfig(proposer="detector").validate()
    with pytest.raises(ConfigError, match="features 'pixels'"):
        RegionConfig(proposer="object_scale").validate()


OBJECT_FRAMES = 12  # frames of the synthetic world checked (3 episodes x 4)
MIN_COVER = 0.6  # of the standing objects, at least this many have their centre in a region (0.69 now) ...
MIN_ON_OBJECT = 0.6  # ... and at least this many regions hold an object's centre (0.66; the default proposer's 0.46)


def test_object_scale_regions_hold_the_synthetic_worlds_objects(tmp_path):
    from lionfs_ros.data.synth import GeneratorConfig, generate_dataset, load_catalogue, load_episode
    from lionfs_ros.data.synth_objects import object_in_region, standing_objects
    from lionfs_ros.model.regions import ObjectScaleProposer

    generate_dataset(tmp_path, GeneratorConfig(seed=5, fps=4, width=128, height=128, num_actions=3,
                                               catalogue=load_catalogue()), num_episodes=3)
    proposer = ObjectScaleProposer(RegionConfig(proposer="object_scale", features="pixels", motion_weight=0.0))
    covered = objects = on_object = regions_seen = 0
    for e in range(3):
        episode = load_episode(tmp_path, f"train_{e:06d}")
        frames = np.linspace(0, episode.num_frames - 1, OBJECT_FRAMES // 3).astype(int)
        for frame, here in zip(frames, standing_objects(str(tmp_path), episode, frames)):
            (regions,) = proposer.propose([episode.frames[frame]], torch.zeros(1, 1, 1, 1), max_regions=len(here))
            boxes = [(r.x0, r.y0, r.x1, r.y1) for r in regions]
            assert all(abs(b[2] - b[0] - 0.2) < 1e-6 and 0.0 <= b[0] and b[2] <= 1.0 for b in boxes)  # object_size
            covered += sum(any(o.centre_in(b) for b in boxes) for o in here)
            on_object += sum(object_in_region(here, b) is not None for b in boxes)
            objects, regions_seen = objects + len(here), regions_seen + len(boxes)
    assert objects >= OBJECT_FRAMES, "too few standing objects: the test would prove little"
    assert covered >= MIN_COVER * objects and on_object >= MIN_ON_OBJECT * regions_seen, (covered, objects, on_object,
                                                                                         regions_seen)


def test_the_question_picks_the_tag_that_shares_most_of_its_words():
    from lionfs_ros.model.region_order import matched_index, moved_last, question_match

    tags = [" red cube labelled K", " cyan bottle labelled OIL with purple cap", " cyan box", " nothing"]
    assert question_match("What does the label on the cyan bottle say?", tags[1]) == 2  # cyan, bottle
    assert matched_index("What does the label on the cyan bottle say?", tags) == 1
    assert matched_index("What colour is the cap of the cyan bottle?", tags) == 1  # cap too
    assert matched_index("Which letter is on the red cube?", tags) == 0
    assert matched_index("Is it a cyan thing?", tags) == 1  # equals (one word each): the first of them
    assert matched_index("What should I do next?", tags) is None and matched_index("anything", []) is None
    assert moved_last(["a", "b", "c"], 0) == ["b", "c", "a"] and moved_last(["a", "b"], None) == ["a", "b"]


def test_the_asked_region_is_laid_out_last_among_the_kept_ones():
    """``asked_last``: the picked proposal last, ``keep`` regions in all (``keyframes.question_candidates``)."""
    from lionfs_ros.model.region_order import asked_last

    proposals = ["a", "b", "c", "d", "e"]
    assert asked_last(proposals, 1, 3) == ["a", "c", "b"]  # among the first three: moved last
    assert asked_last(proposals, 4, 3) == ["a", "b", "e"]  # past them: after the first two
    assert asked_last(proposals, None, 3) == ["a", "b", "c"] and asked_last(["a"], None, 3) == ["a"]
