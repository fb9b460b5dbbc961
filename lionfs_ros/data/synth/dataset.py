"""Generate a whole dataset directory: episodes, optional bags, annotations and manifest."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

from .bag import ANSWERS_TOPIC, GROUND_TRUTH_TOPIC, IMAGE_TOPIC, QUERY_TOPIC, write_episode_bag
from .episode import Episode
from .generate import GeneratorConfig, generate_episode
from .storage import DatasetWriter, bag_path
from .timeline import general_encoder_stride

FRAME_TIME_RULE = "frame i is shown at time i / fps seconds; a narration's time is the frame where its action completes"


@dataclass
class DatasetSummary:
    root: Path
    manifest: Path
    episodes: int = 0
    frames: int = 0
    duration_s: float = 0.0
    narration_kinds: Counter = field(default_factory=Counter)
    question_kinds: Counter = field(default_factory=Counter)
    bags: list[Path] = field(default_factory=list)


def subset_name(config: GeneratorConfig) -> str:
    return "heldout" if config.heldout else config.split


def _header(config: GeneratorConfig, write_bags: bool) -> dict:
    catalogue = config.catalogue
    stride = general_encoder_stride(config.fps, catalogue.general_fps)
    return {
        "generator": "lionfs_ros.data.synth",
        "catalogue_version": catalogue.version,
        "seed": config.seed,
        "split": config.split,
        "heldout": config.heldout,
        "fps": config.fps,
        "width": config.width,
        "height": config.height,
        "num_actions": config.num_actions,  # with the rest, what replays an episode's plan (frame_labels)
        "distractors": config.distractors,
        "frame_time": FRAME_TIME_RULE,
        "general_encoder_fps": catalogue.general_fps,
        "egocentric_encoder_fps": catalogue.egocentric_fps,
        # Quick actions fall strictly between the frames a general-rate sampler keeps
        # (every `stride`-th frame from frame 0) only when fps is a multiple of general_fps.
        "general_encoder_frame_stride": stride,
        "heldout_rules": {
            "shape_colour": sorted(list(pair) for pair in catalogue.heldout.shape_colour),
            "shape_pair": sorted(sorted(pair) for pair in catalogue.heldout.shape_pair),
        },
        "bag_topics": {"image": IMAGE_TOPIC, "ground_truth": GROUND_TRUTH_TOPIC, "query": QUERY_TOPIC,
                       "answers": ANSWERS_TOPIC} if write_bags else None,
    }


def narration_messages(episode: Episode) -> list[dict]:
    """What goes on the ground-truth topic: one {time, text, kind} object per narration."""
    return [{"time": n.time, "text": n.text, "kind": n.kind} for n in episode.narrations]


def question_messages(episode: Episode) -> list[dict]:
    """The episode's questions for its bag: {time, query_id, question, answer, kind}, ``query_id`` ``q<i>``."""
    return [{"time": q.time, "query_id": f"q{i}", "question": q.question, "answer": q.answer, "kind": q.kind}
            for i, q in enumerate(episode.questions)]


def generate_dataset(root: str | Path, config: GeneratorConfig, num_episodes: int, write_bags: bool = False,
                     on_episode: Callable[[Episode], None] | None = None) -> DatasetSummary:
    """Write `num_episodes` episodes into an empty (or new) directory `root`."""
    if num_episodes < 1:
        raise ValueError(f"number of episodes must be at least 1, got {num_episodes}")
    writer = DatasetWriter(Path(root), _header(config, write_bags), subset_name(config))
    summary = DatasetSummary(Path(root), Path(root))
    for index in range(num_episodes):
        episode = generate_episode(config, index)
        bag = None
        if write_bags:
            bag = write_episode_bag(bag_path(writer.root, episode.episode_id), episode.frames, episode.timestamps,
                                    narration_messages(episode), question_messages(episode))
            summary.bags.append(bag)
        writer.add(episode, bag)
        summary.episodes += 1
        summary.frames += episode.num_frames
        summary.duration_s += episode.duration
        summary.narration_kinds.update(n.kind for n in episode.narrations)
        summary.question_kinds.update(q.kind for q in episode.questions)
        if on_episode is not None:
            on_episode(episode)
    summary.manifest = writer.close()
    return summary
