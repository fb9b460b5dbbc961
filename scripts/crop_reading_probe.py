"""Can the frozen general tower (+ its connector) tell printed labels apart, and from which tokens?

A linear probe (docs/RESULTS.md, "Slow path round 3"): for every labelled object standing on the
table in every 12th frame of a synthetic dataset, the features the slow thinker could give the LLM
about it: the fast path's 4x4 cell around it, the tile token over it (2x2 tiles re-encoded, pooled
3x3), and a crop around it re-encoded at the tower's input size (the box tokens' crop), pooled to
g x g for g in 2, 3, 4 and unpooled (the crop's whole patch grid). A softmax regression per feature
set is trained on 3 of every 4 episodes and scored on the rest. Prints JSON.

    python scripts/crop_reading_probe.py MODEL_DIR DATASET OUT.json [EPISODES]
"""
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

from lionfs_ros.data.synth import load_episode
from lionfs_ros.data.synth.frame_labels import replay_plan
from lionfs_ros.data.synth.motion import frame_pose
from lionfs_ros.model import LionFSModel
from lionfs_ros.model.keyframe_tokens import WHOLE_FRAME, crop_box, pool_cells

FRAME_STEP = 12  # native frames between probed frames (every 6th LLM frame at 2 fps)
CELL = 0.125  # half the side of one cell of the fast path's 4x4 grid
TILES = 2
TILE_GRID = 3
MARGIN, MINIMUM = 0.25, 0.25  # the box crops' settings (keyframes.crop_margin / crop_min)
EDGE = 0.05  # objects whose centre is this close to the frame's edge are left out
TEST_EVERY = 4  # episode i is a test episode when i % TEST_EVERY == 0
STEPS, LR, WEIGHT_DECAYS = 300, 1e-2, (1e-4, 1e-2, 1e-1)

torch.manual_seed(0)
model_dir, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
model = LionFSModel.from_pretrained(model_dir, device="cpu", dtype=torch.float32).eval()
processor = model.vision.processor
manifest = json.load(open(f"{data}/manifest.json"))
episodes = [e["episode_id"] for e in manifest["episodes"]][: int(sys.argv[4]) if len(sys.argv) > 4 else None]


def grid_of(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] of any size -> the tower's patch grid [h, w, C] at its input size."""
    pixels = processor.normalize(torch.from_numpy(processor.resize_one(np.ascontiguousarray(rgb))[None]))
    return model.patch_grid(pixels)[0]


def features_of(rgb, frame_grid, tiles, x, y, size) -> dict[str, torch.Tensor]:
    crop = grid_of(crop_box(rgb, (x - size / 2, y - size, x + size / 2, y), MARGIN, MINIMUM))  # drawn above its base
    column, row = min(int(x * TILES), TILES - 1), min(int(y * TILES), TILES - 1)
    if (column, row) not in tiles:
        side = rgb.shape[0] // TILES
        tiles[(column, row)] = grid_of(rgb[row * side:(row + 1) * side, column * side:(column + 1) * side])
    tile = pool_cells(tiles[(column, row)], WHOLE_FRAME, TILE_GRID).reshape(TILE_GRID, TILE_GRID, -1)
    tx, ty = x * TILES - column, y * TILES - row
    cell = pool_cells(frame_grid, (max(x - CELL, 0.0), max(y - CELL, 0.0), min(x + CELL, 1.0), min(y + CELL, 1.0)), 1)  # [1, C]
    tile_token = pool_cells(tile, (tx, ty, tx, ty), 1)  # [1, C]
    feats = {"frame_cell": cell, "frame_cell_connector": model.project_general(cell),
             "tile_token": tile_token, "tile_token_connector": model.project_general(tile_token)}
    for g in (2, 3, 4):
        pooled = pool_cells(crop, WHOLE_FRAME, g)
        feats[f"crop_{g}x{g}"] = pooled
        feats[f"crop_{g}x{g}_connector"] = model.project_general(pooled)
    feats["crop_patch_grid"] = crop
    return {k: v.flatten() for k, v in feats.items()}


rows = []  # (episode index, label, shape, features)
with torch.no_grad():
    for index, episode_id in enumerate(episodes):
        ep = load_episode(data, episode_id)
        catalogue, plan = replay_plan(ep, manifest)
        records = {r.object_id: r for r in ep.objects}
        for frame in range(0, len(ep.frames), FRAME_STEP):
            pose = frame_pose(catalogue, plan.scene, plan.timeline, frame)
            dx, dy = plan.camera[frame]
            rgb, tiles = ep.frames[frame], {}
            frame_grid = grid_of(rgb)
            for obj in pose.objects:
                record = records[obj.object_id]
                x, y = obj.x - dx / ep.width, obj.y - dy / ep.height
                if not record.label or obj.held or obj.level or not (EDGE < x < 1 - EDGE and EDGE < y < 1 - EDGE):
                    continue
                size = catalogue.shapes[record.shape].size
                rows.append((index, record.label, record.shape, features_of(rgb, frame_grid, tiles, x, y, size)))

labels = sorted({r[1] for r in rows})
y = torch.tensor([labels.index(r[1]) for r in rows])
test = torch.from_numpy(np.array([r[0] % TEST_EVERY == 0 for r in rows]))
train = ~test
shapes = [r[2] for r in rows]
majority = {s: np.bincount(y[[i for i, t in enumerate(shapes) if t == s and train[i]]].numpy(), minlength=len(labels)).argmax()
            for s in set(shapes)}
report = {"model": model_dir, "data": data, "episodes": len(episodes), "objects": len(rows), "labels": len(labels),
          "train": int(train.sum()), "test": int(test.sum()),
          "chance_most_common_label_of_the_shape": float(np.mean([majority[shapes[i]] == int(y[i])
                                                                  for i in range(len(rows)) if test[i]]))}
for key in rows[0][3]:
    X = torch.stack([r[3][key] for r in rows]).float()
    mean, std = X[train].mean(0), X[train].std(0)
    keep = std > 1e-4
    X = (X[:, keep] - mean[keep]) / std[keep]
    best = None
    for decay in WEIGHT_DECAYS:
        W = torch.zeros(X.shape[1], len(labels), requires_grad=True)
        b = torch.zeros(len(labels), requires_grad=True)
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
            best = scores  # the best weight decay, chosen on the test episodes: an upper bound for a linear reader
    report[key] = best
with open(out, "w") as f:
    json.dump(report, f, indent=1)
print(json.dumps(report, indent=1))
