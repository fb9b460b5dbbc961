"""Pixel-level checks that the world exercises the LION-FS mechanisms it is tagged with."""
from __future__ import annotations

import numpy as np
import pytest

from lionfs_ros.data.synth.generate import plan_episode, renderer_for
from lionfs_ros.data.synth.timeline import general_encoder_stride

SEEDS = range(4)


def _still_renderer(config, index=0):
    """No camera jitter and no background motion: only the hands and objects change pixels."""
    plan = plan_episode(config, index)
    return plan, renderer_for(config, plan, jitter=False)


@pytest.mark.parametrize("seed", SEEDS)
def test_quick_actions_are_invisible_to_the_general_encoder(tiny_config, catalogue, seed):
    config = tiny_config(seed=seed, distractors=False)
    plan, renderer = _still_renderer(config)
    stride = general_encoder_stride(config.fps, catalogue.general_fps)
    quick = [a for a in plan.timeline.actions if a.quick]
    assert quick and plan.timeline.quick_hidden_from_general_encoder
    for action in quick:
        assert action.start_frame % stride == 0
        assert action.end_frame - action.start_frame <= stride
        assert (action.end_frame - action.start_frame) / config.fps < 1.0 / catalogue.general_fps
        before = renderer.render(action.start_frame)
        after = renderer.render(action.start_frame + stride)
        # The 2 fps sampler sees the same picture before and after the tap ...
        assert np.array_equal(before, after)
        # ... while the 8 fps stream sees the hand move in between.
        assert any(not np.array_equal(before, renderer.render(f))
                   for f in range(action.start_frame + 1, action.end_frame))


@pytest.mark.parametrize("seed", SEEDS)
def test_static_segments_do_not_change(tiny_config, seed):
    config = tiny_config(seed=seed, distractors=False)
    plan, renderer = _still_renderer(config)
    assert plan.timeline.static_segments
    for segment in plan.timeline.static_segments:
        first = renderer.render(segment.start_frame)
        for frame in range(segment.start_frame + 1, segment.end_frame, 3):
            assert np.array_equal(first, renderer.render(frame))


def test_background_keeps_moving_during_static_segments(tiny_config):
    config = tiny_config(seed=0)
    plan, renderer = _still_renderer(config)
    segment = plan.timeline.static_segments[0]
    frames = [renderer.render(f) for f in range(segment.start_frame, segment.end_frame)]
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])


def test_labels_are_drawn_on_objects(catalogue):
    """Two otherwise identical blocks differ only in their printed letter."""
    from lionfs_ros.data.synth.sprites import SpriteStyle, object_sprite

    def block(label):
        style = SpriteStyle(colour=catalogue.colours["red"], patch_colour=None, fill_colour=None,
                            fill_level=0.0, label=label, is_open=False, lit=False)
        return object_sprite(catalogue, "block", style, size_px=20.0, unit_px=128.0)

    a, x = block("A"), block("X")
    assert a.shape == x.shape
    changed = np.count_nonzero(np.any(a != x, axis=-1))
    assert changed > 0
    # The difference is a few pixels of ink: a detail that coarse pooled tokens average away.
    assert changed < 0.25 * np.count_nonzero(a[..., 3])
