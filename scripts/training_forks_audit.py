"""What a model's training forks teach, and whether the model learned it (issue 15, CPU).

Builds training samples exactly as ``lionfs train`` does with the model's own thinking settings
(``ThinkingSampler`` with ``--extra-questions`` detail questions per episode and detail answers weighted, the
crop reader's tags inserted by ``train.region_tags``), runs the model on each, and counts on the weighted (detail)
forks that ask a printed label or letter: (1) the answer appears among the fork's tags (`` ... labelled X``),
(2) the tag of the asked object (`` <colour> <shape> labelled X`` with the question's colour and shape) is the
answer, (3) the model's argmax reproduces the whole answer, teacher-forced. (3) far under (1) on episodes the model
was trained on says the LLM did not learn to copy the tag. ``--show N`` prints the first N such forks.

    lionfs synth --out /tmp/synth8 --seed 100 --episodes 8 --split train   # round 9's shard_00, seed 100
    python scripts/training_forks_audit.py MODEL /tmp/synth8 --episodes 8
"""
from __future__ import annotations

import argparse
import json
import re
from collections import Counter

import torch

from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.data.synth_streams import synth_examples
from lionfs_ros.model import LionFSModel
from lionfs_ros.train.dataset import StreamCollator, StreamDataset
from lionfs_ros.train.region_tags import SLOTS_KEY, insert_region_tags
from lionfs_ros.train.thinking import ThinkingSampler
from lionfs_ros.train.trainer import prepare_model_inputs

NOVELTY_CELLS = 4  # data.novelty_cells' default
LABEL_QUESTION = re.compile(r"(?:label on|letter is on) the (\w+) (\w+)")


def audit(model, root: str, episodes: int, extra_questions: int, detail_weight: float, show: int) -> dict:
    thinking = model.config.thinking
    recipe = FrameRecipe.for_model(model)
    sampler = ThinkingSampler(model.formatter, model.vision.grid_side, thinking, NOVELTY_CELLS, processor=recipe.general,
                              detail_weight=detail_weight, extra_questions=extra_questions)
    dataset = StreamDataset(synth_examples(root, model.config.stream.frame_fps, True, None, episodes),
                            model.formatter, recipe, thinking=sampler)
    collate = StreamCollator(pad_id=model.tokenizer.pad_token_id, ignore_index=model.config.stream.ignore_index)
    ignore, counts = model.config.stream.ignore_index, Counter()
    for i in range(len(dataset)):
        inputs = prepare_model_inputs(collate([dataset[i]]), recipe)
        with torch.no_grad():
            inputs = insert_region_tags(model, inputs) if SLOTS_KEY in inputs else inputs
            predicted = model(**inputs).logits[0].argmax(-1)  # [L]
        ids, labels, branches = inputs["input_ids"][0], inputs["labels"][0], inputs["branch_ids"][0]
        weights = inputs.get("label_weights")
        for branch in sorted(set(branches.tolist()) - {0}):
            where = (branches == branch).nonzero().flatten()  # [n] this fork's positions
            learned = where[labels[where] != ignore]
            counts["forks"] += 1
            if weights is None or not bool((weights[0][learned] > 1).any()):
                continue
            text = model.tokenizer.decode(ids[where])
            asked = LABEL_QUESTION.findall(text)
            if not asked:
                continue
            answer = model.tokenizer.decode(ids[learned]).replace(model.tokenizer.eos_token or "", "").strip(" :.")
            tags = re.findall(r"labelled ([A-Za-z0-9]+)", text)
            colour, shape = asked[-1]
            own = re.search(rf"{colour} {shape} labelled ([A-Za-z0-9]+)", text)
            counts["label_forks"] += 1
            counts["answer_in_tags"] += answer in tags
            counts["asked_object_tagged"] += own is not None
            counts["asked_object_tag_is_answer"] += bool(own and own.group(1) == answer)
            counts["model_right"] += all(predicted[t - 1].item() == ids[t].item() for t in learned.tolist())
            if show > 0:
                show -= 1
                print(f"--- sample {i} fork {branch}: ...{text[-400:]!r}\n    answer {answer!r}")
    return dict(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data", help="a synth dataset directory (train split)")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--extra-questions", type=int, default=4, help="data.extra_detail_questions")
    parser.add_argument("--detail-weight", type=float, default=5.0, help="training.detail_answer_weight")
    parser.add_argument("--show", type=int, default=0)
    args = parser.parse_args()
    model = LionFSModel.from_pretrained(args.model).eval()
    print(json.dumps(audit(model, args.data, args.episodes, args.extra_questions, args.detail_weight, args.show)))


if __name__ == "__main__":
    main()
