"""Shapes, dtypes and the aggregation router on a tiny fused model."""
import numpy as np
import pytest
import torch

from tiny_parts import IMAGE_SIZE, LLM_WIDTH, PATCH, random_frames


def test_preprocess_any_size_to_tower_pixels(build):
    model = build()
    for shape in [(2, 48, 64, 3), (1, 17, 23, 3)]:
        frames = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
        pixels = model.preprocess(frames)
        assert pixels.shape == (shape[0], 3, IMAGE_SIZE, IMAGE_SIZE) and pixels.dtype == torch.float32
        assert pixels.min() >= -1.0 and pixels.max() <= 1.0  # SigLIP's mean/std 0.5
    with pytest.raises(ValueError, match="uint8"):
        model.preprocess(np.zeros((1, 8, 8, 3), dtype=np.float32))


def test_frame_tokens_grid_and_projection_shapes(build):
    model = build()
    general = model.preprocess(random_frames(3, 0))
    ego = model.preprocess(random_frames(6, 1), "ego")
    fused, weights = model.embed_frames(general, ego, return_weights=True)
    assert fused.shape == (3, 10, LLM_WIDTH) and fused.dtype == torch.float32
    assert weights.shape == (3, 10, 2)
    grid = model.patch_grid(general)
    side = IMAGE_SIZE // PATCH
    assert grid.shape == (3, side, side, 32)
    assert model.project_general(grid).shape == (3, side, side, LLM_WIDTH)
    tokens = model.vision.frame_tokens(general)
    # layout: [SigLIP pooler output, 3x3 adaptive-average bins of the 4x4 grid, row-major]
    torch.testing.assert_close(tokens[:, 0], model.vision.tower(pixel_values=general).pooler_output)
    torch.testing.assert_close(tokens[:, 1], grid[:, 0:2, 0:2].mean((1, 2)))
    torch.testing.assert_close(tokens[:, 2], grid[:, 0:2, 1:3].mean((1, 2)))
    torch.testing.assert_close(tokens[:, 9], grid[:, 2:4, 2:4].mean((1, 2)))


def test_aggregation_weights_sum_to_one_and_follow_the_input(build):
    model = build()
    general = model.preprocess(random_frames(2, 0))
    ego_a = model.preprocess(random_frames(4, 1), "ego")
    ego_b = model.preprocess(random_frames(4, 2), "ego")
    with torch.no_grad():
        fused_a, w_a = model.embed_frames(general, ego_a, return_weights=True)
        _, w_b = model.embed_frames(general, ego_b, return_weights=True)
    torch.testing.assert_close(w_a.sum(-1), torch.ones(2, 10))
    assert (w_a > 0).all()
    assert not torch.allclose(w_a, w_b, atol=1e-4)  # a different ego stream re-weights the tokens
    assert not torch.allclose(w_a[0], w_a[1], atol=1e-4)  # frames get their own weights
    with torch.no_grad():
        g = model.project_general(model.vision.frame_tokens(general))
        from lionfs_ros.model.vision import pool_ego_tokens

        e = model.ego_connector(pool_ego_tokens(model.ego.frame_tokens(ego_a), 2, 10))
    torch.testing.assert_close(fused_a, w_a[..., :1] * g + w_a[..., 1:] * e)


def test_precomputed_ego_features(tiny_dirs):
    from lionfs_ros.model import LionFSConfig, LionFSModel

    from tiny_parts import make_config

    data = make_config(tiny_dirs).to_dict()
    data["ego"] = {"source": "features", "feature_dim": 24, "frames_per_frame": 4}
    model = LionFSModel.from_config(LionFSConfig.from_dict(data)).eval()
    general = model.preprocess(random_frames(2, 0))
    one_vector = torch.randn(8, 24)
    out = model.embed_frames(general, one_vector)
    assert out.shape == (2, 10, LLM_WIDTH)
    with pytest.raises(ValueError, match="multiple"):
        model.embed_frames(general, torch.randn(7, 24))


def test_step_shapes_and_interval_probability(build):
    model = build(beta=0.5)
    general = model.preprocess(random_frames(1, 0))
    ego = model.preprocess(random_frames(2, 1), "ego")
    frame = model.embed_frames(general, ego)
    cache = model.new_cache()
    ids = model.formatter.system_ids() + model.formatter.stream_open_ids() + model.formatter.frame_ids(after_frame=False)
    out = model.step_ids(ids, frame, cache)
    assert out.logits.shape == (1, len(ids), len(model.tokenizer) - 1)
    p = model.p_interval(out.logits[0, -1])
    assert p.shape == () and 0.0 < float(p) < 1.0
    assert bool(model.should_respond(out.logits[0, -1], threshold=1.0))  # P < 1 always speaks
    assert model.token_ids.placeholder != model.token_ids.interval != model.token_ids.eos
    assert cache.seq_length == len(ids)


def test_embed_frames_refuses_missing_ego(build):
    model = build()
    with pytest.raises(ValueError, match="egocentric"):
        model.embed_frames(model.preprocess(random_frames(1, 0)))
    baseline = build(fused=False)
    with pytest.raises(ValueError, match="no egocentric"):
        baseline.embed_frames(baseline.preprocess(random_frames(1, 0)), torch.zeros(2, 32))
