"""Fast-path time per frame, several models measured in alternation on the same clips and machine.

One frame of the fast path: its pixels through the encoders (general frame + its ego window), the
LLM step over ``[interval] + n placeholders`` on a growing cache, and the speak/silent decision.
Responses are not generated, so every model does the same work per frame. Rounds alternate the
models, so a machine whose load drifts (a shared CPU) biases none of them; the median is reported.

    python -m lionfs_ros.eval.fast_path_timing --models A B --data DIR [--clips 2] [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.model.image_processing import normalize
from lionfs_ros.data.frame_cache import load_frames

from .evaluate import load_eval_examples


@torch.no_grad()
def frame_times_ms(model, example, recipe: FrameRecipe) -> list[float]:
    frames = load_frames(example, recipe)
    general = normalize(torch.from_numpy(frames.general), recipe.general)
    ego = None if frames.ego is None else normalize(torch.from_numpy(frames.ego), recipe.ego)
    per = recipe.ego_per_frame
    f = model.formatter
    cache = model.new_cache()
    model.step_ids(f.system_ids() + f.stream_open_ids(), None, cache)
    times = []
    for index in range(example.num_frames):
        start = time.perf_counter()
        embeds = model.embed_frames(general[index:index + 1], None if ego is None else ego[index * per:(index + 1) * per])
        out = model.step_ids(f.frame_ids(after_frame=index > 0), embeds, cache)
        bool(model.should_respond(out.logits[0, -1]))
        times.append((time.perf_counter() - start) * 1e3)
    return times


def compare(model_dirs: list[str], data: str, clips: int, rounds: int, device: str = "cpu") -> dict:
    from lionfs_ros.model import LionFSModel

    models = {d: LionFSModel.from_pretrained(d, device=device).eval() for d in model_dirs}
    first = next(iter(models.values()))
    examples = load_eval_examples(data, first.config.stream.frame_fps, limit=clips)
    samples: dict[str, list[float]] = {d: [] for d in models}
    for _ in range(rounds):
        for name, model in models.items():
            recipe = FrameRecipe.for_model(model)
            for example in examples:
                samples[name] += frame_times_ms(model, example, recipe)
    return {name: {"median_ms": statistics.median(v), "frames": len(v)} for name, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: least sensitive to other load)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(compare(args.models, args.data, args.clips, args.rounds, args.device), indent=2))


if __name__ == "__main__":
    main()
