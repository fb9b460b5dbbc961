"""Can the general tower (+ its connector) tell printed labels apart, and from which tokens?

A probe (docs/RESULTS.md, "Slow path round 3" and "Round 5"): for every labelled object standing on
the table in every 12th frame of a synthetic dataset, the features the slow thinker could give the
LLM about it. Rows ``linear``: the frozen tower's features (the fast path's 4x4 cell around the
object, the tile token over it: 2x2 tiles re-encoded, pooled 3x3, and a crop around it re-encoded at
the tower's input size, the box tokens' crop, pooled to g x g for g in 2, 3, 4 and unpooled), each read
by a softmax regression. Rows ``finetune``: a trainable copy of the tower (the model's own tower is
left as it is) fine-tuned on the task itself, crop -> label, its patch grid pooled g x g (each
``--pool``) and read by a linear head, for ``--steps`` of 64 crops (stopped after ``--seconds``);
rows ``finetune_other`` / ``linear_other``: the fine-tuned / frozen-linear readers trained on another
dataset's episodes (``--train-data``, e.g. the training split: many more objects) instead of the probe's
own training episodes. Every row is scored
on every 4th episode of DATASET; the others learn on the rest (``finetune_other``: on OTHER_DATASET).
Prints JSON and writes it to OUT.json.

    python scripts/crop_reading_probe.py MODEL_DIR DATASET OUT.json [--episodes N]
        [--rows linear finetune finetune_other linear_other] [--pool 8 2] [--jitter 1] [--steps 300] [--seconds 400]
        [--train-data OTHER_DATASET [--train-episodes N]]
"""
import argparse
import copy
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lionfs_ros.model import LionFSModel
from lionfs_ros.model.crop_reader import CropReader
from lionfs_ros.model.keyframe_tokens import WHOLE_FRAME, crop_box, pool_cells
from lionfs_ros.train.crop_pretraining import episode_objects, jittered

FRAME_STEP = 12  # native frames between probed frames (every 6th LLM frame at 2 fps)
CELL = 0.125  # half the side of one cell of the fast path's 4x4 grid
TILES = 2
TILE_GRID = 3
MARGIN, MINIMUM = 0.25, 0.25  # the box crops' settings (keyframes.crop_margin / crop_min)
TEST_EVERY = 4  # episode i is a test episode when i % TEST_EVERY == 0
STEPS, LR, WEIGHT_DECAYS = 300, 1e-2, (1e-4, 1e-2, 1e-1)  # the linear rows' regression
TUNE_BATCH, TUNE_LR, HEAD_LR, TUNE_DECAY, TUNE_WARMUP = 64, 3e-4, 1e-3, 1e-2, 20  # the finetune rows (AdamW, cosine)
JITTER, SCALE = 0.25, 1.25  # finetune rows' training crops: box centre moved by <= 25% of its size, scaled by <= 1.25x


class Probe:
    def __init__(self, model: LionFSModel):
        self.model = model
        self.processor = model.vision.processor

    def resized(self, rgb: np.ndarray) -> torch.Tensor:
        """uint8 [H, W, 3] of any size -> uint8 [S, S, 3] at the tower's input size."""
        return torch.from_numpy(np.array(self.processor.resize_one(np.ascontiguousarray(rgb))))

    def grid_of(self, rgb: np.ndarray) -> torch.Tensor:
        """uint8 [H, W, 3] of any size -> the frozen tower's patch grid [h, w, C] at its input size."""
        return self.model.patch_grid(self.processor.normalize(self.resized(rgb)[None]))[0]

    def linear_features(self, rgb, frame_grid, tiles, box) -> dict[str, torch.Tensor]:
        x, y = (box[0] + box[2]) / 2, box[3]
        crop = self.grid_of(crop_box(rgb, box, MARGIN, MINIMUM))
        column, row = min(int(x * TILES), TILES - 1), min(int(y * TILES), TILES - 1)
        if (column, row) not in tiles:
            side = rgb.shape[0] // TILES
            tiles[(column, row)] = self.grid_of(rgb[row * side:(row + 1) * side, column * side:(column + 1) * side])
        tile = pool_cells(tiles[(column, row)], WHOLE_FRAME, TILE_GRID).reshape(TILE_GRID, TILE_GRID, -1)
        tx, ty = x * TILES - column, y * TILES - row
        cell = pool_cells(frame_grid, (max(x - CELL, 0.0), max(y - CELL, 0.0), min(x + CELL, 1.0), min(y + CELL, 1.0)), 1)
        tile_token = pool_cells(tile, (tx, ty, tx, ty), 1)  # [1, C]
        project = self.model.project_general
        feats = {"frame_cell": cell, "frame_cell_connector": project(cell),
                 "tile_token": tile_token, "tile_token_connector": project(tile_token)}
        for g in (2, 3, 4):
            pooled = pool_cells(crop, WHOLE_FRAME, g)
            feats[f"crop_{g}x{g}"] = pooled
            feats[f"crop_{g}x{g}_connector"] = project(pooled)
        feats["crop_patch_grid"] = crop
        return {k: v.flatten() for k, v in feats.items()}


def linear_reader(X: torch.Tensor, y: torch.Tensor, train: torch.Tensor, classes: int,
                  test: torch.Tensor | None = None) -> dict:
    """Softmax regression on standardized features; the best weight decay on the test episodes (an upper bound;
    ``test``: default the rows not in ``train``)."""
    test = ~train if test is None else test
    mean, std = X[train].mean(0), X[train].std(0)
    keep = std > 1e-4
    X = (X[:, keep] - mean[keep]) / std[keep]
    best = None
    for decay in WEIGHT_DECAYS:
        W = torch.zeros(X.shape[1], classes, requires_grad=True)
        b = torch.zeros(classes, requires_grad=True)
        opt = torch.optim.Adam([W, b], lr=LR)
        for _ in range(STEPS):
            opt.zero_grad()
            loss = F.cross_entropy(X[train] @ W + b, y[train]) + decay * W.pow(2).sum()
            loss.backward()
            opt.step()
        with torch.no_grad():
            scores = {"dim": int(X.shape[1]), "weight_decay": decay,
                      "train_accuracy": round(float(((X[train] @ W + b).argmax(1) == y[train]).float().mean()), 3),
                      "test_accuracy": round(float(((X[test] @ W + b).argmax(1) == y[test]).float().mean()), 3)}
        if best is None or scores["test_accuracy"] > best["test_accuracy"]:
            best = scores
    return best


class TunedCropReader(nn.Module):
    """A trainable copy of the general tower and the crop pretraining stage's head for the label alone."""

    def __init__(self, model: LionFSModel, pool: int, classes: int):
        super().__init__()
        self.encoder = copy.deepcopy(model.vision).float().requires_grad_(True)
        self.heads = CropReader(model.vision.hidden_size, pool, {"label": tuple(range(classes))})

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.heads(self.encoder.patch_grid(pixels))["label"]  # [B, classes]


def finetune_reader(probe: Probe, frames: list[np.ndarray], objects: list[tuple[int, tuple]], y: torch.Tensor,
                    train: torch.Tensor, test: torch.Tensor, classes: int, pool: int, steps: int, seconds: float,
                    jitter: bool, tower_lr: float = TUNE_LR) -> dict:
    """Fine-tune a ``TunedCropReader`` on the train objects' crops for ``steps`` (warm-up, cosine; stopped after
    ``seconds``); ``jitter``: training crops around moved/scaled boxes; ``tower_lr`` 0: the head alone (the tower
    frozen). Scored on centred crops."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    reader = TunedCropReader(probe.model, pool, classes).train()
    reader.encoder.requires_grad_(tower_lr > 0)
    groups = [{"params": reader.heads.parameters(), "lr": HEAD_LR}]
    groups += [{"params": reader.encoder.parameters(), "lr": tower_lr}] if tower_lr > 0 else []
    opt = torch.optim.AdamW(groups, weight_decay=TUNE_DECAY)
    base = [group["lr"] for group in opt.param_groups]
    train_index = train.nonzero().flatten()

    def pixels(indices, moved: bool) -> torch.Tensor:  # -> float32 [B, 3, S, S]
        crops = [crop_box(frames[objects[i][0]], jittered(objects[i][1], rng.random(3), JITTER, SCALE) if moved
                          else objects[i][1], MARGIN, MINIMUM)
                 for i in indices.tolist()]
        return probe.processor.normalize(torch.stack([probe.resized(c) for c in crops]))

    started, step, order = time.monotonic(), 0, torch.empty(0, dtype=torch.long)
    while step < steps and time.monotonic() - started < seconds:
        if len(order) < TUNE_BATCH:
            order = torch.cat([order, train_index[torch.randperm(len(train_index))]])
        batch, order = order[:TUNE_BATCH], order[TUNE_BATCH:]
        scale = min(1.0, (step + 1) / TUNE_WARMUP) * 0.5 * (1 + np.cos(np.pi * step / steps))
        for group, lr in zip(opt.param_groups, base):
            group["lr"] = lr * scale
        loss = F.cross_entropy(reader(pixels(batch, jitter)), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    reader.eval()
    with torch.no_grad():
        everything = torch.arange(len(objects))
        predicted = torch.cat([reader(pixels(everything[i:i + 256], False)).argmax(1) for i in range(0, len(objects), 256)])
    right = predicted == y
    return {"pool": pool, "dim": pool * pool * probe.model.vision.hidden_size, "jitter": jitter, "tower_lr": tower_lr, "steps": step, "planned_steps": steps,
            "epochs": round(step * TUNE_BATCH / int(train.sum()), 1), "seconds": round(time.monotonic() - started, 1),
            "final_batch_loss": round(float(loss), 4), "train_objects": int(train.sum()),
            "train_accuracy": round(float(right[train].float().mean()), 3),
            "test_accuracy": round(float(right[test].float().mean()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--episodes", type=int, default=None)
    parser.add_argument("--rows", nargs="+", choices=("linear", "finetune", "finetune_other", "linear_other"),
                        default=["linear", "finetune", "finetune_other"])
    parser.add_argument("--pool", type=int, nargs="+", default=[8, 2], help="finetune rows: box tokens per side")
    parser.add_argument("--jitter", type=int, nargs="+", choices=(0, 1), default=[1],
                        help="finetune rows: 1 = training crops around moved/scaled boxes, 0 = centred")
    parser.add_argument("--steps", type=int, default=300, help="finetune rows: steps of 64 crops each")
    parser.add_argument("--seconds", type=float, default=400.0, help="finetune rows: stop each after this long")
    parser.add_argument("--train-data", default=None, help="finetune_other rows: the reader trained on this dataset's"
                        " episodes alone (e.g. `lionfs synth --split train`), scored on the same held-out episodes")
    parser.add_argument("--train-episodes", type=int, default=None, help="the first episodes of --train-data")
    parser.add_argument("--tower-lr", type=float, default=TUNE_LR, help="finetune rows: the tower's learning rate"
                        " (0: the tower frozen, the head alone)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = LionFSModel.from_pretrained(args.model, device="cpu", dtype=torch.float32).eval()
    probe = Probe(model)
    manifest = json.load(open(f"{args.data}/manifest.json"))  # the episode list
    episodes = [e["episode_id"] for e in manifest["episodes"]][: args.episodes]
    rows, frames, objects = [], [], []  # (episode index, label, shape, linear features); rgb; (frame, box)
    with torch.no_grad():
        for index, episode_id in enumerate(episodes):
            for _, rgb, found in episode_objects(args.data, episode_id, FRAME_STEP, labelled_only=True):
                frame_grid = probe.grid_of(rgb) if "linear" in args.rows else None
                tiles = {}
                for obj in found:
                    feats = probe.linear_features(rgb, frame_grid, tiles, obj.box) if "linear" in args.rows else {}
                    rows.append((index, obj.label, obj.shape, feats))
                    objects.append((len(frames), obj.box))
                frames.append(rgb)
    labels = sorted({r[1] for r in rows})
    y = torch.tensor([labels.index(r[1]) for r in rows])
    train = torch.from_numpy(np.array([r[0] % TEST_EVERY != 0 for r in rows]))
    shapes = [r[2] for r in rows]
    majority = {s: np.bincount(y[[i for i, t in enumerate(shapes) if t == s and train[i]]].numpy(),
                               minlength=len(labels)).argmax() for s in set(shapes)}
    report = {"model": args.model, "data": args.data, "episodes": len(episodes), "objects": len(rows),
              "labels": len(labels), "train": int(train.sum()), "test": int((~train).sum()),
              "chance_most_common_label_of_the_shape": float(np.mean([majority[shapes[i]] == int(y[i])
                                                                      for i in range(len(rows)) if not train[i]]))}
    if "linear" in args.rows:
        for key in rows[0][3]:
            report[key] = linear_reader(torch.stack([r[3][key] for r in rows]).float(), y, train, len(labels))
            print(key, report[key], flush=True)
    if "finetune" in args.rows:
        test = ~train
        for pool in args.pool:
            for jitter in args.jitter:
                key = f"finetuned_tower_crop_{pool}x{pool}" + ("_jitter" if jitter else "")
                report[key] = finetune_reader(probe, frames, objects, y, train, test, len(labels), pool, args.steps,
                                              args.seconds, jitter, args.tower_lr)
                print(key, report[key], flush=True)
    if {"finetune_other", "linear_other"} & set(args.rows) and args.train_data:  # readers trained on other episodes
        extra = json.load(open(f"{args.train_data}/manifest.json"))
        seen = [e["episode_id"] for e in extra["episodes"]][: args.train_episodes]
        first = len(objects)
        for episode_id in seen:
            for _, rgb, found in episode_objects(args.train_data, episode_id, FRAME_STEP, labelled_only=True):
                for obj in found:
                    if obj.label in labels:  # labels the held-out episodes can be scored on
                        objects.append((len(frames), obj.box))
                        y = torch.cat([y, torch.tensor([labels.index(obj.label)])])
                frames.append(rgb)
        outside = torch.zeros(len(objects), dtype=torch.bool)
        outside[first:] = True
        test = torch.cat([~train, torch.zeros(len(objects) - first, dtype=torch.bool)])
        if "linear_other" in args.rows:  # the frozen tower's crop, read linearly, with the other episodes' many objects
            with torch.no_grad():
                grids = torch.stack([probe.grid_of(crop_box(frames[f], box, MARGIN, MINIMUM)) for f, box in objects])
            for pool in args.pool:
                X = grids.flatten(1) if pool == probe.model.vision.grid_side else torch.stack(
                    [pool_cells(g, WHOLE_FRAME, pool).flatten() for g in grids])
                key = f"linear_frozen_crop_{pool}x{pool}_on_{len(seen)}_other_episodes"
                report[key] = linear_reader(X, y, outside, len(labels), test)
                print(key, report[key], flush=True)
        for pool in args.pool if "finetune_other" in args.rows else ():
            key = f"finetuned_tower_crop_{pool}x{pool}_jitter_on_{len(seen)}_other_episodes_tower_lr_{args.tower_lr:g}"
            report[key] = finetune_reader(probe, frames, objects, y, outside, test, len(labels), pool, args.steps,
                                          args.seconds, True, args.tower_lr)
            print(key, report[key], flush=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
