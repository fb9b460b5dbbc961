"""Can the slow path's LLM learn to copy the region tags? (issue 15, round 12, CPU probe)

Trains a model's LLM alone on the slow-path forks of TRAIN's episodes (``train.fork_stage``: samples built and
tagged as ``lionfs train`` does, frozen parts cached once), then runs ``training_forks_audit`` on AUDIT's
episodes (label forks: answer in the tags / model right) and saves the model to OUT/model, for
``scripts/region_tags_accuracy.py OUT/model /tmp/h5_v900 --episodes 48``.

    python scripts/fork_copy_probe.py /work/briefs/s6/r11/on/m/model /tmp/synth8 OUT --steps 300
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.data.synth_streams import synth_examples
from lionfs_ros.model import LionFSModel
from lionfs_ros.train.dataset import StreamCollator, StreamDataset
from lionfs_ros.train.fork_stage import cache_samples, train_forks
from lionfs_ros.train.thinking import ThinkingSampler

sys.path.insert(0, str(Path(__file__).parent))
from training_forks_audit import audit  # noqa: E402

NOVELTY_CELLS = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("train", help="synth directory whose episodes are trained on")
    parser.add_argument("out")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--skip", type=int, default=0, help="drop the first N episodes of TRAIN")
    parser.add_argument("--extra-questions", type=int, default=4)
    parser.add_argument("--detail-weight", type=float, default=5.0)
    parser.add_argument("--main-weight", type=float, default=0.0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--relabel", type=float, default=0.0, help="chance a sample is seen relabelled (counterfactual)")
    parser.add_argument("--audit", default=None, help="synth directory to audit (default: TRAIN)")
    parser.add_argument("--audit-episodes", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = LionFSModel.from_pretrained(args.model).eval()
    recipe = FrameRecipe.for_model(model)
    sampler = ThinkingSampler(model.formatter, model.vision.grid_side, model.config.thinking, NOVELTY_CELLS,
                              processor=recipe.general, detail_weight=args.detail_weight,
                              extra_questions=args.extra_questions)
    examples = synth_examples(args.train, model.config.stream.frame_fps, True, None, args.skip + args.episodes)
    dataset = StreamDataset(examples[args.skip:], model.formatter, recipe, thinking=sampler)
    collate = StreamCollator(pad_id=model.tokenizer.pad_token_id, ignore_index=model.config.stream.ignore_index)
    start = time.monotonic()
    samples = cache_samples(model, dataset, collate, recipe, args.main_weight)
    cache_s = time.monotonic() - start
    tokens = sum(s.input_ids.shape[1] for s in samples)
    print(json.dumps({"samples": len(samples), "tokens": tokens, "weighted_forks": sum(s.weighted_forks() for s in samples),
                      "cache_s": round(cache_s, 1)}), flush=True)
    history = train_forks(model, samples, args.steps, args.lr, args.batch, args.warmup,
                          log=lambda h: print(json.dumps(h), flush=True), relabel_p=args.relabel)
    model.save_pretrained(out / "model")
    counts = audit(model, args.audit or args.train, args.audit_episodes, args.extra_questions, args.detail_weight, 0)
    summary = {"args": vars(args), "cache_s": round(cache_s, 1), "tokens": tokens, "history": history, "audit": counts}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({"audit": counts}), flush=True)


if __name__ == "__main__":
    main()
