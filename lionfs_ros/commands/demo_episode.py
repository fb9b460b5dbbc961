"""The episode `lionfs demo` plays: one synthetic egocentric episode, rendered on the fly."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from lionfs_ros.data.synth.episode import Episode, Narration
from lionfs_ros.data.synth.generate import GeneratorConfig, generate_episode

# The demo episode comes from the validation split, which the bundled model never trained on.
DEMO_SPLIT = "val"


@dataclass
class DemoEpisode:
    episode: Episode

    @property
    def narrations(self) -> list[Narration]:
        return self.episode.narrations

    @property
    def duration(self) -> float:
        return self.episode.duration

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        for frame, time in zip(self.episode.frames, self.episode.timestamps):
            yield frame, float(time)


def demo_episode(seed: int, actions: int, fps: int | None = None) -> DemoEpisode:
    config = GeneratorConfig(seed=seed, split=DEMO_SPLIT, num_actions=actions, fps=fps)
    return DemoEpisode(generate_episode(config, index=0))
