"""Synthetic egocentric world: a procedural table-top video generator with narration ground truth.

ROS-free (never imports rclpy). See README.md in this directory for the on-disk layout.
"""
from .catalogue import Catalogue, CatalogueError, load_catalogue
from .dataset import DatasetSummary, generate_dataset
from .episode import ActionRecord, Episode, Narration, ObjectRecord, Question, Segment
from .generate import GeneratorConfig, GeneratorConfigError, generate_episode, plan_episode
from .reader import episode_ids, iter_dataset, load_episode, read_manifest
from .storage import DatasetError

__all__ = [
    "ActionRecord", "Catalogue", "CatalogueError", "DatasetError", "DatasetSummary", "Episode",
    "GeneratorConfig", "GeneratorConfigError", "Narration", "ObjectRecord", "Question", "Segment",
    "episode_ids", "generate_dataset", "generate_episode", "iter_dataset", "load_catalogue", "load_episode",
    "plan_episode", "read_manifest",
]
