"""A new crop reader for a trained model, trained on the proposer's crops (issue 15; CPU, minutes).

    python scripts/crop_reader_on_proposer.py MODEL_DIR TRAIN_SYNTH_DIR OUT_DIR [--steps N] [--episodes N] ...

Loads the model (it must have a crop tower), runs crop pretraining with ``crops: proposer`` and
``train_tower: false`` (``train.crop_pretraining``: the heads alone learn, on the model's crop tower as it
is, from the regions its slow thinker's proposer finds on the training episodes' frames, each labelled with
the object it holds or ``none``), keeps the heads as the model's crop reader and saves the model to
``OUT_DIR/model`` (the model directory given is not touched); ``OUT_DIR/crop_pretraining/summary.json``
holds the held-out accuracies (proposer crops of the last ``--holdout`` episodes). ``--part-colour``: the
reader also reads the colour of an object's part (a cap, a lid) and writes it in the tags. Measure it with
``scripts/region_tags_accuracy.py OUT_DIR/model VAL_SYNTH_DIR``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lionfs_ros.data.synth_streams import synth_examples
from lionfs_ros.model_loading import load_for_inference
from lionfs_ros.train.config import CropPretrainingSection
from lionfs_ros.train.crop_pretraining import CROP_DIR, pretrain_crop_tower

MODEL_SUBDIR = "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("train_data", help="a `lionfs synth` folder (training split)")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--holdout", type=int, default=8)
    parser.add_argument("--frame-step", type=int, default=12)
    parser.add_argument("--head-learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--part-colour", action="store_true",
                        help="a fourth head reads the colour of an object's part (crop_pretraining.part_colour)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _, _ = load_for_inference(args.model, "cpu", "float32")
    if model.crop_vision is None:
        raise SystemExit(f"{args.model} has no crop tower: a reader for it needs one (crop pretraining)")
    keyframes, regions = model.config.thinking.keyframes, model.config.thinking.regions
    section = CropPretrainingSection(steps=args.steps, batch_size=args.batch_size, episodes=args.episodes,
                                     holdout_episodes=args.holdout, frame_step=args.frame_step,
                                     head_learning_rate=args.head_learning_rate, max_minutes=args.max_minutes,
                                     crops="proposer", train_tower=False, part_colour=args.part_colour)
    section.validate()
    examples = synth_examples(args.train_data, model.config.stream.frame_fps, questions=False)
    out = Path(args.out)
    pretrain_crop_tower(model, examples, model.vision.processor, section, keyframes.box_grid, keyframes.crop_margin,
                        keyframes.crop_min, out / CROP_DIR, torch.device("cpu"), False, args.seed, keep_reader=True,
                        proposer=(keyframes, regions))
    model.save_pretrained(out / MODEL_SUBDIR)
    print(f"saved {out / MODEL_SUBDIR}", flush=True)


if __name__ == "__main__":
    main()
