"""The crop reader: what a region shows, named by classification heads on the crop tower's patch grid.

``train.crop_pretraining`` trains the crop tower (``LionFSModel.crop_vision``) with one linear head per
attribute (printed ``label``, ``shape``, ``colour``) on the crop's patch grid pooled to ``pool x pool``
tokens. With ``crop.reader_classes`` set the model keeps those heads as its ``crop_reader`` (saved in the
model's safetensors like every weight; the class names in ``config.json``), and with
``thinking.keyframes.region_tags`` the thinking template writes, after each region's box tokens, what
the reader reads there as text (``region_tag``: `` red cube labelled K``). ``LionFSModel.region_tags`` is
the one function that turns crops' patch grids into tags: training (``train.thinking.insert_region_tags``)
and the engine's slow thinker (``thinking_template.build_thinking_inputs``) both call it.
"""
from __future__ import annotations

from itertools import product

import torch
import torch.nn.functional as F
from torch import nn

ATTRIBUTES = ("label", "shape", "colour")
NO_LABEL = "none"  # the label class of an object with no printed label (class 0, as crop pretraining names it)
NOTHING = "nothing"  # the tag of a region the reader reads no object in (a ``none`` shape, proposer crops)


class CropReader(nn.Module):
    """Per attribute, a linear layer on the crop's patch grid pooled to ``pool x pool`` (layer-normed tokens)."""

    def __init__(self, width: int, pool: int, classes: dict[str, tuple[str, ...]]):
        super().__init__()
        self.pool = pool
        self.classes = {name: tuple(values) for name, values in classes.items()}
        self.norm = nn.LayerNorm(width)
        self.heads = nn.ModuleDict({name: nn.Linear(pool * pool * width, len(values)) for name, values in classes.items()})

    def forward(self, grid: torch.Tensor) -> dict[str, torch.Tensor]:
        """Patch grid ``[B, h, w, C]`` -> logits ``{attribute: [B, classes]}``."""
        pooled = F.adaptive_avg_pool2d(grid.permute(0, 3, 1, 2), (self.pool, self.pool)).flatten(2).transpose(1, 2)
        flat = self.norm(pooled.to(self.norm.weight.dtype)).flatten(1)  # [B, pool*pool*C]
        return {name: head(flat) for name, head in self.heads.items()}

    @torch.no_grad()
    def read(self, grid: torch.Tensor) -> list[dict[str, str]]:
        """Patch grids ``[B, h, w, C]`` -> per crop, each attribute's most likely class name."""
        missing = set(ATTRIBUTES) - set(self.classes)
        if missing:
            raise ValueError(f"a crop reader that writes tags needs heads for {sorted(missing)}")
        logits = self(grid)
        best = {name: logits[name].argmax(dim=1).tolist() for name in ATTRIBUTES}  # {attribute: [B]}
        return [{name: self.classes[name][best[name][i]] for name in ATTRIBUTES} for i in range(grid.shape[0])]

    def all_tags(self) -> list[str]:
        """Every tag the reader can write (for the template's token bound)."""
        return [region_tag(dict(zip(ATTRIBUTES, values))) for values in product(*(self.classes[n] for n in ATTRIBUTES))]


def region_tag(read: dict[str, str]) -> str:
    """What the reader read -> the tag written after a region's box tokens: `` red cube labelled K``
    (`` red cube`` for an object with no printed label; `` nothing`` where a reader trained on proposer
    crops, with ``none`` shape classes, reads no object)."""
    if read["shape"] == NO_LABEL:
        return f" {NOTHING}"
    tag = f" {read['colour']} {read['shape']}"
    return tag if read["label"] == NO_LABEL else f"{tag} labelled {read['label']}"


def parse_region_tag(tag: str, classes: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """A region's tag (``region_tag``'s text, stripped or not) -> ``{attribute: class name}``, the reader's
    ``classes`` naming the shapes (``none`` for every attribute of `` nothing``)."""
    tag = tag.strip()
    if tag == NOTHING:
        return {name: NO_LABEL for name in ATTRIBUTES}
    head, _, label = tag.partition(" labelled ")
    shape = next((s for s in sorted(classes["shape"], key=len, reverse=True) if head.endswith(f" {s}")), None)
    if shape is None:
        raise ValueError(f"{tag!r} is not a tag of this reader (no shape of {classes['shape']})")
    return {"label": label or NO_LABEL, "shape": shape, "colour": head[: -len(shape) - 1]}
