"""Generate episodes: scene -> timeline -> ground truth -> frames, deterministic per seed."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .annotate import ask_questions, narrate
from .catalogue import Catalogue, load_catalogue
from .episode import ActionRecord, Episode, ObjectRecord, Segment, frame_time
from .render import EpisodeRenderer, camera_path
from .scene import Scene, sample_scene
from .timeline import Timeline, plan_timeline

SPLITS = ("train", "val")
# Separate random streams per split and held-out flag, so train and val never share episodes.
SPLIT_STREAM = {"train": 0, "val": 1}
# Independent sub-streams of one episode: changing how questions are drawn leaves frames alone.
STREAM_SCENE, STREAM_TIMELINE, STREAM_CAMERA, STREAM_QUESTIONS = range(4)


class GeneratorConfigError(ValueError):
    """An invalid generator setting; the message says which and why."""


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int
    split: str = "train"
    heldout: bool = False
    fps: int | None = None
    width: int | None = None
    height: int | None = None
    num_actions: int | None = None  # fixed number of actions per episode (tests); None samples the catalogue range
    distractors: bool = True
    catalogue: Catalogue = field(default_factory=load_catalogue)

    def __post_init__(self) -> None:
        catalogue = self.catalogue
        defaults = {"fps": catalogue.default_fps, "width": catalogue.default_size[0],
                    "height": catalogue.default_size[1]}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        validate_settings(catalogue, self.seed, self.split, self.heldout, self.fps, self.width, self.height)
        if self.num_actions is not None and self.num_actions < 1:
            raise GeneratorConfigError(f"num_actions must be at least 1, got {self.num_actions}")


def validate_settings(catalogue: Catalogue, seed: int, split: str, heldout: bool, fps: int, width: int,
                      height: int) -> None:
    if not isinstance(seed, int) or seed < 0:
        raise GeneratorConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if split not in SPLITS:
        raise GeneratorConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if heldout and split == "train":
        raise GeneratorConfigError("held-out combinations never go into the train split; use split 'val'")
    if not isinstance(fps, int) or not 1 <= fps <= catalogue.max_fps:
        raise GeneratorConfigError(f"fps must be an integer from 1 to {catalogue.max_fps}, got {fps!r}")
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or value < catalogue.min_size:
            raise GeneratorConfigError(
                f"{name} must be an integer of at least {catalogue.min_size} pixels, got {value!r}")


@dataclass(frozen=True)
class EpisodePlan:
    """Everything decided about an episode before any pixel is drawn."""
    episode_id: str
    index: int
    scene: Scene
    timeline: Timeline
    camera: np.ndarray


def episode_id(config: GeneratorConfig, index: int) -> str:
    prefix = "heldout" if config.heldout else config.split
    return f"{prefix}_{index:06d}"


def episode_rngs(config: GeneratorConfig, index: int) -> list[np.random.Generator]:
    """Independent generators for one episode, derived only from (seed, split, heldout, index)."""
    root = np.random.SeedSequence(entropy=config.seed,
                                  spawn_key=(SPLIT_STREAM[config.split], int(config.heldout), index))
    return [np.random.default_rng(child) for child in root.spawn(STREAM_QUESTIONS + 1)]


def plan_episode(config: GeneratorConfig, index: int) -> EpisodePlan:
    rngs = episode_rngs(config, index)
    scene = sample_scene(rngs[STREAM_SCENE], config.catalogue, config.heldout)
    timeline = plan_timeline(rngs[STREAM_TIMELINE], config.catalogue, scene, config.fps, config.num_actions)
    camera = camera_path(rngs[STREAM_CAMERA], config.catalogue, timeline.num_frames, config.width, config.height)
    return EpisodePlan(episode_id(config, index), index, scene, timeline, camera)


def renderer_for(config: GeneratorConfig, plan: EpisodePlan, jitter: bool = True) -> EpisodeRenderer:
    camera = plan.camera if jitter else np.zeros_like(plan.camera)
    return EpisodeRenderer(config.catalogue, plan.scene, plan.timeline, config.width, config.height, camera,
                           distractors=config.distractors)


def _records(plan: EpisodePlan) -> tuple[list[ActionRecord], list[ObjectRecord], list[Segment]]:
    fps = plan.timeline.fps
    actions = [ActionRecord(a.index, a.choice.verb, a.choice.hand, a.choice.object_id, a.choice.target_id,
                            a.choice.direction, frame_time(a.start_frame, fps), frame_time(a.end_frame, fps),
                            a.start_frame, a.end_frame, a.quick) for a in plan.timeline.actions]
    initial = plan.scene.initial.objects
    objects = [ObjectRecord(o.object_id, o.shape, o.colour, o.name, o.label, o.patch_colour, o.liquid,
                            round(initial[o.object_id].x, 4), round(initial[o.object_id].y, 4))
               for o in plan.scene.objects]
    statics = [Segment(frame_time(s.start_frame, fps), frame_time(s.end_frame, fps), s.start_frame, s.end_frame)
               for s in plan.timeline.static_segments]
    return actions, objects, statics


def generate_episode(config: GeneratorConfig, index: int) -> Episode:
    """Plan, annotate and render episode `index` of the dataset that `config` describes."""
    plan = plan_episode(config, index)
    catalogue = config.catalogue
    narrations = narrate(catalogue, plan.scene, plan.timeline)
    questions = ask_questions(episode_rngs(config, index)[STREAM_QUESTIONS], catalogue, plan.scene, plan.timeline)
    frames = renderer_for(config, plan).render_all()
    timestamps = np.array([frame_time(i, config.fps) for i in range(plan.timeline.num_frames)], np.float64)
    actions, objects, statics = _records(plan)
    return Episode(
        episode_id=plan.episode_id,
        split=config.split,
        heldout=config.heldout,
        seed=config.seed,
        index=index,
        fps=config.fps,
        width=config.width,
        height=config.height,
        frames=frames,
        timestamps=timestamps,
        narrations=narrations,
        questions=questions,
        actions=actions,
        objects=objects,
        static_segments=statics,
        heldout_combinations=list(plan.scene.heldout_combinations),
        extra={"quick_hidden_from_general_encoder": plan.timeline.quick_hidden_from_general_encoder,
               "distractors": [d.kind for d in plan.scene.distractors]},
    )
