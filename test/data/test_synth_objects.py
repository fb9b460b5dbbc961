"""Where the synthetic world's objects stand on a frame (``data.synth_objects``): the boxes frame what the renderer
draws, and a proposed region is named by the object it holds."""
import numpy as np

from lionfs_ros.data.synth import generate_dataset, load_episode
from lionfs_ros.data.synth.frame_labels import replay_plan, replay_settings
from lionfs_ros.data.synth.generate import renderer_for
from lionfs_ros.data.synth.reader import read_manifest
from lionfs_ros.data.synth.render import _draw_objects
from lionfs_ros.data.synth_objects import StandingObject, object_in_region, standing_objects

BLACK = (0, 0, 0)  # the table colour the objects are drawn on alone: their shadows vanish
FRAME_STEP = 7
PIXEL = 1.5  # tolerance, pixels (anti-aliased edges, the sprite placed at whole pixels) ...
SPILL = 0.2  # ... plus this fraction of the box's side: caps and long labels reach past an object's size


def test_standing_boxes_frame_the_drawn_objects(tmp_path, tiny_config):
    root = tmp_path / "ds"
    generate_dataset(root, tiny_config(seed=3, width=96, height=64), num_episodes=1)
    episode = load_episode(root, "train_000000", frames=False)
    config, plan = replay_plan(episode, replay_settings(read_manifest(root)))
    renderer = renderer_for(tiny_config(seed=3, width=96, height=64), plan)
    canvas, (W, H) = renderer.canvas, (episode.width, episode.height)
    frames = range(0, episode.num_frames, FRAME_STEP)
    checked = 0
    for frame, found in zip(frames, standing_objects(str(root), episode, frames)):
        poses = {p.object_id: p for p in renderer.pose(frame).objects}
        for obj in found:
            pose = poses[obj.object_id]
            if pose.is_open:  # an open lid is drawn beside the object
                continue
            image = canvas.blank()
            _draw_objects(image, canvas, config, plan.scene, (pose,), BLACK)
            dx, dy = plan.camera[frame]
            m = canvas.margin
            drawn = image[m + dy:m + dy + H, m + dx:m + dx + W].any(axis=-1)
            ys, xs = np.nonzero(drawn)
            x0, y0, x1, y1 = obj.box[0] * W, obj.box[1] * H, obj.box[2] * W, obj.box[3] * H
            pad_x, pad_y = SPILL * (x1 - x0) + PIXEL, SPILL * (y1 - y0) + PIXEL
            assert x0 - pad_x <= xs.min() and xs.max() + 1 <= x1 + pad_x, (obj, xs.min(), xs.max())
            assert y0 - pad_y <= ys.min() and ys.max() + 1 <= y1 + pad_y, (obj, ys.min(), ys.max())
            assert abs((xs.min() + xs.max() + 1) / 2 - (x0 + x1) / 2) <= pad_x / 2
            assert abs((ys.min() + ys.max() + 1) / 2 - (y0 + y1) / 2) <= pad_y / 2
            checked += 1
    assert checked >= 5, "too few standing objects checked: the test would prove little"


def _object(name: str, box) -> StandingObject:
    return StandingObject(name, box, "none", "cup", "red")


def test_a_region_holds_the_largest_object_whose_centre_it_covers():
    small, big, off = _object("small", (0.1, 0.1, 0.2, 0.2)), _object("big", (0.0, 0.0, 0.4, 0.4)), \
        _object("off", (0.7, 0.7, 0.9, 0.9))
    assert object_in_region([small, big, off], (0.1, 0.1, 0.3, 0.3)) == big
    assert object_in_region([small, off], (0.1, 0.1, 0.3, 0.3)) == small
    assert object_in_region([small, big], (0.5, 0.5, 0.7, 0.7)) is None
    left, right = _object("left", (0.1, 0.4, 0.3, 0.6)), _object("right", (0.45, 0.4, 0.65, 0.6))
    assert object_in_region([left, right], (0.0, 0.0, 0.6, 1.0)) == right  # equals: the more central
