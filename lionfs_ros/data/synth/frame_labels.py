"""What each LLM frame of a synthetic episode shows, as class labels: the targets of frame-encoder pretraining.

LION-FS starts from pretrained towers (CLIP, SigLIP) that already see colours, shapes and text;
ours start random, and learned from the narration loss alone they left most wrong narrations wrong
on the object's colour or the verb (docs/RESULTS.md). ``lionfs_ros.train.frame_pretraining`` first
teaches them from these labels, the way CLIP learns from captions: for every LLM frame, the
action it shows and the attributes of the objects involved, and what is on the table.

Each frame also gets labels per cell of the token grid the LLM reads (``pool_grid`` x
``pool_grid``): the colour, shape and printed label of the front-most object centred there, and
whether a hand is there (open or gripping). Those come from replaying the episode's plan
(deterministic per seed) to get every object's position at that frame, camera jitter included.

A frame at time ``t`` covers ``(t - 1/frame_fps, t]``: its own pixels and the egocentric frames
before it. Its action is the latest one that overlaps that window, so a quick tap between two
general frames is the label of the frame after it, the frame its narration follows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .actions import SLIDE_DIRECTIONS
from .catalogue import Catalogue
from .episode import Episode, ObjectRecord
from .generate import GeneratorConfig, plan_episode
from .motion import frame_pose
from .storage import DatasetError

NONE = "none"  # class 0 of every attribute: no action, no target, no label
TIME_EPSILON = 1e-6
SCENE = "scene"  # the multi-hot attribute: every (colour, shape) and printed label on the table
HAND_CLASSES = (NONE, "open", "gripping")
GRIPPING = 0.5  # a hand's grip at or above this is closed on something


@dataclass(frozen=True)
class FrameAttributes:
    """Class names of each single-label attribute (``none`` first) and of the multi-hot scene."""

    classes: dict[str, tuple[str, ...]]
    scene: tuple[str, ...]
    cells: dict[str, tuple[str, ...]]  # per cell of the token grid

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue) -> "FrameAttributes":
        colours = tuple(catalogue.colours)
        shapes = tuple(catalogue.shapes)
        labels = tuple(sorted({label for spec in catalogue.shapes.values() for label in spec.labels}))
        classes = {
            "verb": (NONE, *catalogue.actions),
            "direction": (NONE, *SLIDE_DIRECTIONS),
        }
        for role in ("object", "target"):
            classes[f"{role}_colour"] = (NONE, *colours)
            classes[f"{role}_shape"] = (NONE, *shapes)
            classes[f"{role}_label"] = (NONE, *labels)
        classes["object_patch"] = (NONE, *colours)
        scene = tuple(f"{colour} {shape}" for shape in shapes for colour in colours) + labels
        cells = {"cell_colour": (NONE, *colours), "cell_shape": (NONE, *shapes), "cell_label": (NONE, *labels),
                 "cell_hand": HAND_CLASSES}
        return cls(classes, scene, cells)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.classes)


def _object_values(record: ObjectRecord | None) -> dict[str, str]:
    if record is None:
        return {"colour": NONE, "shape": NONE, "label": NONE, "patch": NONE}
    return {"colour": record.colour, "shape": record.shape, "label": record.label or NONE,
            "patch": record.patch_colour or NONE}


def frame_labels(episode: Episode, times: np.ndarray, frame_fps: float,
                 attributes: FrameAttributes) -> dict[str, np.ndarray]:
    """Labels of the frames at ``times`` (seconds): int64 ``[T]`` per attribute, float32 ``[T, S]`` scene."""
    objects = {record.object_id: record for record in episode.objects}
    times = np.asarray(times, dtype=np.float64)
    window = 1.0 / frame_fps
    out = {name: np.zeros(len(times), np.int64) for name in attributes.classes}
    index = {name: {value: i for i, value in enumerate(values)} for name, values in attributes.classes.items()}
    for i, t in enumerate(times):
        showing = [a for a in episode.actions if a.start <= t + TIME_EPSILON and a.end > t - window + TIME_EPSILON]
        if not showing:
            continue
        action = max(showing, key=lambda a: a.start)
        thing = _object_values(objects[action.object_id])
        target = _object_values(objects.get(action.target_id) if action.target_id else None)
        values = {"verb": action.verb, "direction": action.direction or NONE, "object_patch": thing["patch"]}
        for role, found in (("object", thing), ("target", target)):
            for key in ("colour", "shape", "label"):
                values[f"{role}_{key}"] = found[key]
        for name, value in values.items():
            out[name][i] = index[name][value]
    scene = np.zeros(len(attributes.scene), np.float32)
    scene_index = {value: i for i, value in enumerate(attributes.scene)}
    for record in episode.objects:
        scene[scene_index[f"{record.colour} {record.shape}"]] = 1.0
        if record.label:
            scene[scene_index[record.label]] = 1.0
    out[SCENE] = np.broadcast_to(scene, (len(times), len(scene))).copy()
    return out


def replay_settings(manifest: dict) -> dict:
    """What ``replay_plan`` needs of a dataset manifest (the episode list stays behind)."""
    return {key: manifest[key] for key in ("num_actions", "distractors") if key in manifest}


def replay_plan(episode: Episode, manifest: dict):
    """The plan that generated ``episode`` (its scene, timeline and camera path), checked against its record."""
    config = GeneratorConfig(seed=episode.seed, split=episode.split, heldout=episode.heldout, fps=episode.fps,
                             width=episode.width, height=episode.height, num_actions=manifest.get("num_actions"),
                             distractors=manifest.get("distractors", True))
    plan = plan_episode(config, episode.index)
    planned = [(a.choice.verb, a.choice.object_id, a.start_frame, a.end_frame) for a in plan.timeline.actions]
    recorded = [(a.verb, a.object_id, a.start_frame, a.end_frame) for a in episode.actions]
    if planned != recorded:
        raise DatasetError(f"episode {episode.episode_id}: replaying its seed gives other actions; the dataset was "
                           "made by another generator version")
    return config.catalogue, plan


def cell_labels(episode: Episode, manifest: dict, native_frames: np.ndarray, grid: int,
                attributes: FrameAttributes) -> dict[str, np.ndarray]:
    """int64 ``[T, grid * grid]`` per cell attribute (cells row-major) for the given native frames
    (``manifest``: the dataset's, or just its ``replay_settings``)."""
    catalogue, plan = replay_plan(episode, manifest)
    objects = {record.object_id: record for record in episode.objects}
    index = {name: {value: i for i, value in enumerate(values)} for name, values in attributes.cells.items()}
    out = {name: np.zeros((len(native_frames), grid * grid), np.int64) for name in attributes.cells}

    def cell(x: float, y: float, frame: int) -> int | None:
        dx, dy = plan.camera[frame]
        column = int(np.floor((x - dx / episode.width) * grid))
        row = int(np.floor((y - dy / episode.height) * grid))
        return row * grid + column if 0 <= row < grid and 0 <= column < grid else None

    for i, frame in enumerate(native_frames):
        pose = frame_pose(catalogue, plan.scene, plan.timeline, int(frame))
        for obj in pose.objects:  # back to front: a later object covers an earlier one
            where = cell(obj.x, obj.y, frame)
            if where is None:
                continue
            record = objects[obj.object_id]
            out["cell_colour"][i, where] = index["cell_colour"][record.colour]
            out["cell_shape"][i, where] = index["cell_shape"][record.shape]
            out["cell_label"][i, where] = index["cell_label"][record.label or NONE]
        for hand in pose.hands:
            where = cell(hand.x, hand.y, frame)
            if where is not None:
                out["cell_hand"][i, where] = index["cell_hand"]["gripping" if hand.grip >= GRIPPING else "open"]
    return out
