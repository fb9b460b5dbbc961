"""Helpers of the training tests: a tiny LionFS training config over tiny synthetic episodes."""
from __future__ import annotations

import copy
from pathlib import Path

from lionfs_ros.data.synth import GeneratorConfig, generate_dataset
from lionfs_ros.train.config import TrainConfig

EPISODE_SIZE = 48  # pixels: small frames render and resize fast
EPISODE_ACTIONS = 2
TINY_MODEL = {
    "vision": {
        "config": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                   "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        "global_token": "pooler", "pool_grid": 2, "trainable": True,
    },
    "ego": {
        "source": "tower", "frames_per_frame": 4,
        "tower": {"config": {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                             "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 16, "patch_size": 8},
                  "global_token": "cls", "pool_grid": 2, "trainable": True},
    },
    "aggregation": {"mode": "router", "router_hidden": 32},
    "dropping": {"mode": "mod", "layers": "interleaved", "beta": 0.5},
    "llm": {"config": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
                       "tie_word_embeddings": True}},
    "stream": {"frame_fps": 2.0},
}
TINY_VOCAB = 300


def write_episodes(root: Path, episodes: int, seed: int, split: str = "train") -> Path:
    config = GeneratorConfig(seed=seed, split=split, width=EPISODE_SIZE, height=EPISODE_SIZE, num_actions=EPISODE_ACTIONS)
    generate_dataset(root, config, num_episodes=episodes, write_bags=False)
    return root


def tiny_config_dict(train_dir: Path, **training) -> dict:
    settings = {"max_steps": 20, "per_device_train_batch_size": 2, "learning_rate": 3e-3, "warmup_steps": 0,
                "lr_scheduler_type": "constant", "logging_steps": 1, "save_steps": 1000, "save_total_limit": None,
                "dataloader_num_workers": 0, "report_to": ["tensorboard"]}
    settings.update(training)
    return {
        "seed": 0,
        "model": {"config": copy.deepcopy(TINY_MODEL)},
        "tokenizer": {"train_vocab_size": TINY_VOCAB},
        "data": {"format": "synth", "train": str(train_dir), "questions": True},
        "training": settings,
    }


def tiny_config(train_dir: Path, **training) -> TrainConfig:
    return TrainConfig.from_dict(tiny_config_dict(train_dir, **training))


def tensorboard_tags(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under ``log_dir``: tag -> [(step, value)] (read as TensorBoard reads them:
    records of length, CRC, an ``Event`` protobuf, CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):
            length = int.from_bytes(data[offset:offset + 8], "little")
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars
