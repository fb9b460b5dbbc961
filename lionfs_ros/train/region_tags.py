"""Region tags in training (``data.keyframes.region_tags``): the crop reader's reading written into the forks.

The engine's slow thinker writes, after each region's box tokens, what the model's frozen crop reader
reads on that region's crop (``model.thinking_template.build_thinking_inputs``). Training lays out its
forks in the data loader, which holds no model; there each region's tag is laid out empty
(``template_layout(tags=...)`` with ``""``, the same ids as no tag) and its place recorded
(``ThinkingSample.tag_slots``). In the main process, before the forward, ``insert_region_tags`` reads
the batch's box crops with the model's crop tower and reader (``thinking_template.read_tags`` ->
``LionFSModel.region_tags``, the engine's own function) and inserts each tag's text ids at its place:
the fork's later positions move up by the tag's length, as they would have been laid out with the tag,
so every fork is the template the engine feeds on the same crops. Tags are template text: never a target.
With a frozen crop tower the crops' patch grids read here are handed to the forward
(``keyframe_crop_grids``), so each crop goes through the tower once.
"""
from __future__ import annotations

import torch

from lionfs_ros.model.template_regions import read_tags

SLOTS_KEY = "tag_slots"
# The columns a training batch may have, and what a padded or inserted position holds in each.
PAD_VALUES = {"labels": None, "attention_mask": 0, "position_ids": 0, "branch_ids": 0, "template_mask": False,
              "label_weights": 1.0}


@torch.no_grad()
def batch_tags(model, inputs: dict) -> tuple[list[list[list[int]]], torch.Tensor]:
    """Per row, per tag slot, the tag's token ids; and the box crops' patch grids ``[N, h, w, C]``."""
    slots = inputs[SLOTS_KEY]
    crop_grids = model.crop_grid(inputs["keyframe_crops"])  # [N, h, w, C]
    tags = read_tags(model, inputs["keyframe_runs"], crop_grids, slots)
    return [[model.formatter.text_ids(tag) for tag in row] for row in tags], crop_grids


def insert_region_tags(model, inputs: dict) -> dict:
    """``LionFSModel.forward`` inputs with ``tag_slots`` -> the same inputs with every tag's ids inserted."""
    inputs = dict(inputs)
    slots = inputs.pop(SLOTS_KEY)
    if not any(slots):
        return inputs
    tags, crop_grids = batch_tags(model, {**inputs, SLOTS_KEY: slots})
    if not any(p.requires_grad for p in model.crop_vision.parameters()):
        inputs.pop("keyframe_crops")
        inputs["keyframe_crop_grids"] = crop_grids
    pad = {"input_ids": model.tokenizer.pad_token_id, **PAD_VALUES, "labels": model.config.stream.ignore_index}
    return {**inputs, **splice(inputs, slots, tags, pad)}


def splice(columns: dict, slots: list[list[int]], tags: list[list[list[int]]], pad: dict) -> dict:
    """Insert ``tags[row][j]`` (ids) before position ``slots[row][j]`` of every row of the ``[B, L]`` columns
    (those of ``pad`` present; right-padded rows, ``attention_mask`` says how long): inserted tokens are
    unlearned text on the fork of the token before them, and that fork's later positions move up. Returns
    the new columns, right-padded with ``pad``'s values."""
    names = [name for name in pad if name in columns]
    lengths = columns["attention_mask"].sum(dim=1).tolist()
    rows = [_splice_row({name: columns[name][row, :n].cpu() for name in names}, slots[row], tags[row], pad)
            for row, n in enumerate(lengths)]
    longest = max(len(row["input_ids"]) for row in rows)
    out = {}
    for name in names:
        like = columns[name]
        out[name] = torch.full((len(rows), longest), pad[name], dtype=like.dtype)
        for i, row in enumerate(rows):
            out[name][i, :len(row[name])] = row[name]
        out[name] = out[name].to(like.device)
    return out


def _splice_row(row: dict, slots: list[int], tags: list[list[int]], pad: dict) -> dict:
    n = len(row["input_ids"])
    index = torch.arange(n)
    positions, branches = row["position_ids"].clone(), row["branch_ids"]
    for slot, ids in zip(slots, tags):  # later tokens of the slot's fork move up by the tag's length
        positions += len(ids) * ((branches == branches[slot - 1]) & (index >= slot))
    pieces, start = {name: [] for name in row}, 0
    for slot, ids in zip(slots, tags):
        for name in row:
            pieces[name].append(positions[start:slot] if name == "position_ids" else row[name][start:slot])
        branch, first = int(branches[slot - 1]), positions[slot - 1] + 1
        inserted = {"input_ids": torch.tensor(ids, dtype=row["input_ids"].dtype), "attention_mask": 1,
                    "position_ids": first + torch.arange(len(ids)), "branch_ids": branch}
        for name in row:
            value = inserted.get(name, pad[name])
            pieces[name].append(value if isinstance(value, torch.Tensor) and value.dim()
                                else torch.full((len(ids),), value, dtype=row[name].dtype))
        start = slot
    for name in row:
        pieces[name].append(positions[start:] if name == "position_ids" else row[name][start:])
    return {name: torch.cat(parts).to(row[name].dtype) for name, parts in pieces.items()}
