"""Can the slow path's 4-layer LLM learn the tag lookup at all? A synthetic copy task in the fork's format (issue 15).

Each sequence is a fork as the slow thinker lays it out, without the stream before it:
``]\\nKeyframes: [<v>x4] [<v>x4 regions:<v>x64 TAG<v>x64 TAG ...]\\nUser: QUESTION\\nAssistant: ANSWER</s>``, the
placeholders filled with real template features (blocks cut from cached training forks of DATA), the tags random
objects in the reader's vocabulary (`` cyan bottle labelled OIL with purple cap``, `` nothing``), the question about
one tagged object (its printed label, a block's letter, or its part's colour), the answer what its tag says. Only
the LLM trains (from MODEL), on the answers; reported: exact answers on fresh sequences (by kind) before and after,
then ``training_forks_audit`` on DATA (does the copy carry over to the real forks?). ``--mix F``: each batch also
holds real cached forks of TRAIN (relabelled, ``train.fork_stage.relabel``) at F of its rows. ``--layout``
moves the same pieces (round 13): ``question_first`` puts ``\nUser: QUESTION`` right after the opening ``]``, before
the keyframes; ``tags_together`` puts the regions' placeholders first, then all tags as one line
``regions:<v>x64<v>x64<v>x64<v>x64 tags: TAG; TAG; TAG; TAG]`` (the same objects, question, answer and features).
Round 14 adds ``matched_last`` (the fork layout with the asked object's region, its 64 placeholders' features and its
tag, moved to be the last region, the others keeping their order) and ``question_first_matched_last`` (the question
first as in ``question_first``, and the asked region last, so its tag ends right before ``]\nAssistant:``): the
layouts a slow thinker ranking the regions by a question-tag match would give. Only the regions' order changes: the
random draws are the same and in the same order (checked on 50 sequences per layout against the probe before round
14: ``fork``, ``question_first`` and ``tags_together`` give equal ids, labels, features and kinds; the new layouts
have the same features as a multiset, the same kinds and answer tokens).

    python scripts/copy_curriculum_probe.py /work/briefs/s6/r11/on/m/model /tmp/synth8 OUT --steps 200
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.data.synth_streams import synth_examples
from lionfs_ros.model import LionFSModel
from lionfs_ros.model.crop_reader import NO_LABEL
from lionfs_ros.train.dataset import StreamCollator, StreamDataset
from lionfs_ros.train.fork_stage import cache_samples, fork_loss, label_choices, llm_only, relabel
from lionfs_ros.train.thinking import ThinkingSampler

sys.path.insert(0, str(Path(__file__).parent))
from training_forks_audit import audit  # noqa: E402

LETTER_SHAPES = ("block",)  # the catalogue asks "What letter is on the C block?"
PARTS = {"bottle": "cap", "jar": "lid"}
REGIONS, BOX_TOKENS, GRID_TOKENS = 4, 64, 4
LAYOUTS = ("fork", "question_first", "tags_together", "matched_last", "question_first_matched_last")


def feature_blocks(samples) -> dict[int, list[torch.Tensor]]:
    """The template placeholder runs of cached samples, by length: ``{4: [[4, d], ...], 64: [[64, d], ...]}``."""
    out: dict[int, list[torch.Tensor]] = {}
    for s in samples:
        mask, used = s.template_mask[0].tolist(), 0
        run = 0
        for flag in mask + [False]:
            if flag:
                run += 1
            elif run:
                out.setdefault(run, []).append(s.template_embeds[used:used + run])
                used, run = used + run, 0
    return out


class CopyTask:
    def __init__(self, model, blocks, rng: random.Random, layout: str = "fork"):
        self.m, self.blocks, self.rng, self.layout = model, blocks, rng, layout
        classes = model.crop_reader.classes
        self.labels = [x for x in classes["label"] if x != NO_LABEL]
        self.letters = [x for x in self.labels if len(x) == 1]
        self.words = [x for x in self.labels if len(x) > 1]
        self.shapes = [x for x in classes["shape"] if x != NO_LABEL]
        self.colours = [x for x in classes["colour"] if x != NO_LABEL]

    def _object(self) -> tuple[str, str, str | None, str | None]:
        shape, colour = self.rng.choice(self.shapes), self.rng.choice(self.colours)
        label = self.rng.choice(self.letters if shape in LETTER_SHAPES else self.words + [None])
        patch = self.rng.choice(self.colours) if shape in PARTS else None
        return colour, shape, label, patch

    def sequence(self) -> tuple[list[int], list[int], torch.Tensor, str]:
        """ids, labels (answer tokens and EOS learned), placeholder embeddings ``[P, d]``, the question's kind."""
        fmt, r = self.m.formatter, self.rng
        objects, seen = [], set()
        while len(objects) < REGIONS:
            o = self._object() if r.random() < 0.85 else None
            if o is not None and o[:2] in seen:
                continue
            seen.add(o[:2] if o else None)
            objects.append(o)
        askable = [o for o in objects if o and (o[2] or o[3])]
        if not askable:
            return self.sequence()
        asked = r.choice(askable)
        colour, shape, label, patch = asked
        if label and (not patch or r.random() < 0.5):
            kind = "letter" if shape in LETTER_SHAPES else "label"
            question = (f"What letter is on the {colour} {shape}?" if kind == "letter"
                        else f"What does the label on the {colour} {shape} say?")
            answer = label
        else:
            kind, answer = "part", patch
            question = f"What colour is the {PARTS[shape]} of the {colour} {shape}?"
        embeds = [r.choice(self.blocks[GRID_TOKENS]), r.choice(self.blocks[GRID_TOKENS])]
        embeds += [r.choice(self.blocks[BOX_TOKENS]) for _ in objects]  # every layout draws the same features
        tags = [" nothing" if o is None else f" {o[0]} {o[1]}" + (f" labelled {o[2]}" if o[2] else "")
                + (f" with {o[3]} {PARTS[o[1]]}" if o[3] else "") for o in objects]
        if self.layout.endswith("matched_last"):  # the asked region (its features and tag) last, the rest in order
            at = objects.index(asked)  # (colour, shape) are unique among the objects
            order = [i for i in range(len(objects)) if i != at] + [at]
            tags, embeds = [tags[i] for i in order], embeds[:2] + [embeds[2 + i] for i in order]
        user = "\nUser: " + question
        head, tail = ("]" + user + "\nKeyframes: [", "]\nAssistant:") if self.layout.startswith("question_first") \
            else ("]\nKeyframes: [", "]" + user + "\nAssistant:")
        ph = self.m.token_ids.placeholder
        ids = fmt.text_ids(head) + [ph] * GRID_TOKENS + fmt.text_ids("] [") + [ph] * GRID_TOKENS
        ids += fmt.text_ids(" regions:")
        if self.layout == "tags_together":
            ids += [ph] * (BOX_TOKENS * len(tags)) + fmt.text_ids(" tags:" + ";".join(tags))
        else:
            for tag in tags:
                ids += [ph] * BOX_TOKENS + fmt.text_ids(tag)
        ids += fmt.text_ids(tail)
        body = fmt.assistant_body_ids(answer)
        labels = [-100] * (len(ids) - 1) + body + [-100]
        return ids + body, labels, torch.cat(embeds), kind


def batch_loss(model, batch):
    """Mean answer cross-entropy over a list of sequences (one right-padded forward), and per sequence whether its
    whole answer is the argmax."""
    longest, device = max(len(ids) for ids, *_ in batch), model.device
    ids_t = torch.full((len(batch), longest), model.tokenizer.pad_token_id, dtype=torch.long)
    labels_t = torch.full((len(batch), longest), -100, dtype=torch.long)
    mask = torch.zeros(len(batch), longest, dtype=torch.long)
    for row, (ids, labels, _, _) in enumerate(batch):
        ids_t[row, :len(ids)], labels_t[row, :len(ids)], mask[row, :len(ids)] = torch.tensor(ids), torch.tensor(labels), 1
    ids_t, labels_t, mask = ids_t.to(device), labels_t.to(device), mask.to(device)
    template = ids_t == model.token_ids.placeholder
    embeds, visual = model.joint_embed(ids_t, None, template, torch.cat([e for _, _, e, _ in batch]).to(device))
    logits = model.step(embeds, visual, None, mask).logits  # [B, L, V]
    loss = F.cross_entropy(logits.flatten(0, 1).float(), labels_t.flatten(), ignore_index=-100)
    learned = labels_t != -100
    hit = (logits.argmax(-1) == labels_t) | ~learned
    return loss, hit.all(dim=1).tolist()


def accuracy(model, task_batch) -> dict:
    with torch.no_grad():
        right = sum((batch_loss(model, task_batch[i:i + 32])[1] for i in range(0, len(task_batch), 32)), [])
    kinds = {}
    for (_, _, _, kind), ok in zip(task_batch, right):
        kinds.setdefault(kind, []).append(ok)
    return {k: f"{sum(v)}/{len(v)}" for k, v in sorted(kinds.items())} | {"all": round(sum(right) / len(right), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data", help="synth dir: features for the placeholders, and the audit's episodes")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval", type=int, default=200, help="fresh sequences measured before and after")
    parser.add_argument("--mix", type=float, default=0.0, help="share of each batch that is real (relabelled) forks")
    parser.add_argument("--train", default=None, help="synth dir of the real forks mixed in (default: DATA)")
    parser.add_argument("--train-episodes", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--layout", choices=LAYOUTS, default="fork", help="where the question and the tags sit")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = LionFSModel.from_pretrained(args.model, device=args.device, dtype=torch.float32).eval()
    recipe = FrameRecipe.for_model(model)
    sampler = ThinkingSampler(model.formatter, model.vision.grid_side, model.config.thinking, 4,
                              processor=recipe.general, detail_weight=5.0, extra_questions=4)
    collate = StreamCollator(pad_id=model.tokenizer.pad_token_id, ignore_index=model.config.stream.ignore_index)

    def cached(root, n):
        dataset = StreamDataset(synth_examples(root, model.config.stream.frame_fps, True, None, n), model.formatter,
                                recipe, thinking=sampler)
        return cache_samples(model, dataset, collate, recipe)

    feature_samples = cached(args.data, 4)
    real = cached(args.train or args.data, args.train_episodes) if args.mix > 0 else []
    task = CopyTask(model, feature_blocks(feature_samples), random.Random(1), args.layout)
    held = [task.sequence() for _ in range(args.eval)]
    task.rng = random.Random(2)
    report = {"args": vars(args), "before": accuracy(model, held)}
    print(json.dumps(report["before"]), flush=True)
    params = llm_only(model)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 20))
    rng, choices, start, history = random.Random(3), label_choices(model), time.monotonic(), []
    model.train()
    for step in range(1, args.steps + 1):
        n_real = sum(rng.random() < args.mix for _ in range(args.batch)) if real else 0
        loss = torch.zeros((), device=model.device)
        if n_real < args.batch:
            loss = batch_loss(model, [task.sequence() for _ in range(args.batch - n_real)])[0] * (args.batch - n_real) / args.batch
        for _ in range(n_real):
            sample = relabel(rng.choice(real), choices, model.tokenizer.eos_token_id, -100, rng)
            loss = loss + fork_loss(model, sample) / args.batch
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            history.append({"step": step, "loss": round(float(loss.detach()), 4), "seconds": round(time.monotonic() - start, 1),
                            "held": accuracy(model, held[:64])})
            print(json.dumps(history[-1]), flush=True)
            model.train()
    model.eval()
    report.update(history=history, after=accuracy(model, held))
    print(json.dumps({"after": report["after"]}), flush=True)
    model.save_pretrained(Path(args.out) / "model")
    report["audit"] = audit(model.to("cpu"), args.data, 8, 4, 5.0, 0)  # the audit feeds CPU tensors
    print(json.dumps({"audit": report["audit"]}), flush=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
