"""What a synthetic episode's objects look like on each frame: boxes, and the detail questions they answer.

One place computes where an object stands on a frame (replaying the episode's plan, camera jitter
included): the crop tower's pretraining (``train.crop_pretraining``) cuts its crops there, and the
extra detail questions of the slow path (``data.extra_detail_questions``, ``train.thinking``) ask about
the printed label of an object a proposed region covers.
"""
from __future__ import annotations

from dataclasses import dataclass

from .frame_sources import SynthFrames
from .synth.catalogue import Catalogue
from .synth.episode import ObjectRecord
from .synth.frame_labels import replay_plan, replay_settings
from .synth.motion import frame_pose
from .synth.reader import load_episode, read_manifest

EDGE = 0.05  # objects whose centre is this close to the frame's edge are left out
DETAIL = "detail"  # the catalogue's question kind that needs the slow path's reading

Box = tuple[float, float, float, float]  # normalized x0, y0, x1, y1


def standing_box(catalogue: Catalogue, record: ObjectRecord, obj, camera: tuple[float, float], width: int,
                 height: int) -> Box | None:
    """The normalized box of an object of a frame's pose (the shape drawn above its base), or None when it is
    held, stacked or near the frame's edge (a crop there would be cut or hidden)."""
    dx, dy = camera
    x, y = obj.x - dx / width, obj.y - dy / height
    if obj.held or obj.level or not (EDGE < x < 1 - EDGE and EDGE < y < 1 - EDGE):
        return None
    size = catalogue.shapes[record.shape].size
    return (x - size / 2, y - size, x + size / 2, y)


@dataclass(frozen=True)
class LabelledObject:
    """An object with a printed label on one LLM frame, and the catalogue's detail question about that label."""

    box: Box
    question: str
    answer: str

    def centre_in(self, box: Box) -> bool:
        x, y = (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2
        return box[0] <= x <= box[2] and box[1] <= y <= box[3]


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
