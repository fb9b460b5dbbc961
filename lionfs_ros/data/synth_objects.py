"""What a synthetic episode's objects look like on each frame: boxes, and the detail questions they answer.

One place computes where an object stands on a frame (replaying the episode's plan, camera jitter
included): the crop tower's pretraining (``train.crop_pretraining``) cuts its crops there, and the
extra detail questions of the slow path (``data.extra_detail_questions``, ``train.thinking``) ask about
the printed label of an object a proposed region covers. ``object_in_region`` names the one object a
proposed region holds (crop pretraining's proposer crops, ``scripts/region_tags_accuracy.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .frame_sources import SynthFrames
from .synth.catalogue import Catalogue
from .synth.episode import Episode, ObjectRecord
from .synth.frame_labels import NONE, replay_plan, replay_settings
from .synth.motion import frame_pose
from .synth.reader import load_episode, read_manifest

EDGE = 0.05  # objects whose centre is this close to the frame's edge are left out
DETAIL = "detail"  # the catalogue's question kind that needs the slow path's reading

Box = tuple[float, float, float, float]  # normalized x0, y0, x1, y1


def standing_box(catalogue: Catalogue, record: ObjectRecord, obj, camera: tuple[float, float], width: int,
                 height: int) -> Box | None:
    """The normalized box of an object of a frame's pose (its sprite: ``size`` of min(width, height) across,
    times the pose's ``scale``, centred on the pose's point, as ``synth.render`` draws it), or None when it is held, stacked or near the
    frame's edge (a crop there would be cut or hidden)."""
    dx, dy = camera
    x, y = obj.x - dx / width, obj.y - dy / height
    if obj.held or obj.level or not (EDGE < x < 1 - EDGE and EDGE < y < 1 - EDGE):
        return None
    side = catalogue.shapes[record.shape].size * obj.scale * min(width, height)  # pixels
    half_w, half_h = side / width / 2, side / height / 2
    return (x - half_w, y - half_h, x + half_w, y + half_h)


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _holds(box: Box, point: tuple[float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


@dataclass(frozen=True)
class StandingObject:
    """An object standing on the table on one frame: its normalized box and attributes (``label``: ``none``
    for an object with no printed label, as the crop reader names it; ``patch``: its part's colour, ``part``: the
    catalogue's noun for that part, cap or lid, both ``none`` for an object without one)."""

    object_id: str
    box: Box
    label: str
    shape: str
    colour: str
    patch: str = NONE
    part: str = NONE

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    def centre_in(self, box: Box) -> bool:
        return _holds(box, _centre(self.box))


def standing_objects(root: str, episode: Episode, frames: Sequence[int]) -> list[list[StandingObject]]:
    """Per native frame index of ``frames``: the episode's objects standing on the table away from the
    frame's edge (``standing_box``); ``root``: the dataset the episode was read from (its manifest)."""
    catalogue, plan = replay_plan(episode, replay_settings(read_manifest(root)))
    records = {r.object_id: r for r in episode.objects}
    out = []
    for frame in frames:
        found = []
        for obj in frame_pose(catalogue, plan.scene, plan.timeline, int(frame)).objects:
            record = records[obj.object_id]
            box = standing_box(catalogue, record, obj, plan.camera[int(frame)], episode.width, episode.height)
            if box is not None:
                part = catalogue.shapes[record.shape].patch if record.patch_colour else None
                found.append(StandingObject(obj.object_id, box, record.label or NONE, record.shape, record.colour,
                                            record.patch_colour or NONE, part or NONE))
        out.append(found)
    return out


def object_in_region(objects: Sequence[StandingObject], region: Box) -> StandingObject | None:
    """The object a region holds: of those whose centre is in ``region``, the largest (the most central of
    equals); None if it holds no object's centre."""
    inside = [o for o in objects if o.centre_in(region)]
    if not inside:
        return None
    cx, cy = _centre(region)
    return min(inside, key=lambda o: (-o.area, (_centre(o.box)[0] - cx) ** 2 + (_centre(o.box)[1] - cy) ** 2))


@dataclass(frozen=True)
class LabelledObject:
    """An object with a printed label on one LLM frame, and the catalogue's detail question about that label."""

    box: Box
    question: str
    answer: str

    def centre_in(self, box: Box) -> bool:
        return _holds(box, _centre(self.box))


def labelled_objects(source: SynthFrames) -> list[list[LabelledObject]]:
    """Per LLM frame of the episode: its standing objects with a printed label that a catalogue detail question
    asks for (``{label}`` in its answer, the object's shape among its shapes); twins are left out (their name
    is their label)."""
    if not isinstance(source, SynthFrames):
        raise ValueError(f"labelled objects come from the synthetic world's episodes, not {type(source).__name__}")
    episode = load_episode(source.root, source.episode_id, frames=False)
    catalogue, plan = replay_plan(episode, replay_settings(read_manifest(source.root)))
    specs = [s for s in catalogue.questions.values() if s.kind == DETAIL and "{label}" in s.answer]
    records = {r.object_id: r for r in episode.objects}
    twins = plan.scene.twins
    out = []
    for frame in source.native_frames():
        pose = frame_pose(catalogue, plan.scene, plan.timeline, int(frame))
        found = []
        for obj in pose.objects:
            record = records[obj.object_id]
            spec = next((s for s in specs if record.shape in s.shapes), None)
            if record.label is None or spec is None or obj.object_id in twins:
                continue
            box = standing_box(catalogue, record, obj, plan.camera[int(frame)], episode.width, episode.height)
            if box is not None:
                fields = {"object": record.name, "shape": record.shape, "colour": record.colour, "label": record.label}
                found.append(LabelledObject(box, spec.template.format(**fields), spec.answer.format(**fields)))
        out.append(found)
    return out
