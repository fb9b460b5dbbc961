"""lionfs train: train a LionFS model on narration streams (synthetic world, Ego4D-style annotations)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = ("train a LionFS model (HF Trainer; resumable; TensorBoard logs in OUT/logs). First try: "
        "lionfs train --config config/train/tiny.yaml --out /tmp/lionfs/tiny_run (about 20 s on a 2-core CPU); "
        "guide: docs/TRAINING.md")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True,
                        help="training config YAML: config/train/tiny.yaml (quick start, CPU), demo.yaml (the bundled"
                             " model: hours on a GPU, ~30 GB of disk), others in config/train/")
    parser.add_argument("--out", type=Path, required=True, help="run directory; the model lands in OUT/model")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT/checkpoints")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set training.max_steps=20 (repeatable)")


def run(args: argparse.Namespace) -> int:
    from lionfs_ros.eval.training_callback import ValidationCallback
    from lionfs_ros.model import ConfigError
    from lionfs_ros.train.config import TrainConfig, TrainConfigError
    from lionfs_ros.train.run import TrainRunError, run_training

    try:
        config = TrainConfig.load(args.config, args.overrides)
        extra = [ValidationCallback] if config.validation is not None else []
        model_dir = run_training(config, args.out, resume=args.resume, extra_callbacks=extra)
    except (TrainConfigError, ConfigError, TrainRunError, FileNotFoundError) as err:
        print(f"lionfs train: error: {err}", file=sys.stderr)
        return 2
    print(f"lionfs train: model saved to {model_dir}")
    return 0
