"""`lionfs synth`: generate a synthetic egocentric dataset.

Wire into the top-level CLI with `add_arguments(subparser)` and `run(args)`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .catalogue import CatalogueError, load_catalogue
from .generate import SPLITS, GeneratorConfig, GeneratorConfigError
from .storage import DatasetError, check_output_dir

PROG = "lionfs synth"
EXIT_OK, EXIT_USAGE = 0, 2
DEFAULT_EPISODES = 10


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height), both positive integers."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"size must look like WIDTHxHEIGHT, e.g. 128x128; got {text!r}")
    width, height = int(parts[0]), int(parts[1])
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size must have a positive width and height; got {text!r}")
    return width, height


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from error
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer, got {text!r}") from error
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="new or empty directory for the dataset")
    parser.add_argument("--episodes", type=_positive_int, default=DEFAULT_EPISODES,
                        help=f"number of episodes (default {DEFAULT_EPISODES})")
    parser.add_argument("--seed", type=_seed, default=0, help="dataset seed; same seed, same bytes (default 0)")
    parser.add_argument("--fps", type=_positive_int, default=None,
                        help="frames per second (default from the catalogue: 8)")
    parser.add_argument("--size", type=parse_size, default=None, metavar="WxH",
                        help="frame size in pixels (default from the catalogue: 128x128)")
    parser.add_argument("--bag", action="store_true", help="also write a rosbag2 (mcap) per episode")
    parser.add_argument("--split", choices=SPLITS, default=None,
                        help="train or val (default train; val with --heldout)")
    parser.add_argument("--heldout", action="store_true",
                        help="only scenes with held-out object/colour combinations (evaluation)")
    parser.add_argument("--actions", type=_positive_int, default=None,
                        help="fixed number of actions per episode (default: catalogue range)")
    parser.add_argument("--catalogue", type=Path, default=None, help="alternative catalogue YAML")


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _config(args: argparse.Namespace) -> GeneratorConfig:
    catalogue = load_catalogue(args.catalogue)
    split = args.split or ("val" if args.heldout else "train")
    width, height = args.size if args.size is not None else (None, None)
    return GeneratorConfig(seed=args.seed, split=split, heldout=args.heldout, fps=args.fps, width=width,
                           height=height, num_actions=args.actions, catalogue=catalogue)


def _counts(counter) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counter.items())) or "none"


def run(args: argparse.Namespace) -> int:
    """Generate the dataset; print a summary; 0 on success, 2 on bad arguments or output dir."""
    from tqdm import tqdm

    from .dataset import generate_dataset

    if args.size is not None and not isinstance(args.size, tuple):
        try:
            args.size = parse_size(str(args.size))
        except argparse.ArgumentTypeError as error:
            return _error(str(error))
    if not isinstance(args.episodes, int) or args.episodes < 1:
        return _error(f"--episodes must be a positive integer, got {args.episodes!r}")
    try:
        config = _config(args)
    except (GeneratorConfigError, CatalogueError) as error:
        return _error(str(error))
    if args.bag:
        try:
            import rosbags  # noqa: F401 - fail before generating anything
        except ImportError:
            return _error("--bag needs the 'rosbags' package: pip install rosbags")
    try:
        check_output_dir(Path(args.out))
    except DatasetError as error:
        return _error(str(error))
    with tqdm(total=args.episodes, desc="synth episodes", unit="ep") as progress:
        summary = generate_dataset(args.out, config, args.episodes, write_bags=args.bag,
                                   on_episode=lambda episode: progress.update(1))
    subset = "held-out " + config.split if config.heldout else config.split
    print(f"{PROG}: wrote {summary.episodes} {subset} episodes to {summary.root} "
          f"({summary.frames} frames, {summary.duration_s:.1f} s at {config.fps} fps, "
          f"{config.width}x{config.height}, seed {config.seed})")
    print(f"  narrations: {sum(summary.narration_kinds.values())} ({_counts(summary.narration_kinds)}); "
          f"questions: {sum(summary.question_kinds.values())} ({_counts(summary.question_kinds)})")
    if summary.bags:
        print(f"  bags: {len(summary.bags)} rosbag2/mcap under {summary.root / 'bags'}")
    print(f"  manifest: {summary.manifest}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (python -m lionfs_ros.data.synth.cli) until the top-level CLI wires it."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
