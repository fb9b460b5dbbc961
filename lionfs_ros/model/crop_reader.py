"""The crop reader: what a region shows, named by classification heads on the crop tower's patch grid.

``train.crop_pretraining`` trains the crop tower (``LionFSModel.crop_vision``) with one linear head per
attribute (printed ``label``, ``shape``, ``colour`` and, with ``crop_pretraining.part_colour``, ``patch``:
the colour of the object's part, a bottle's cap or a jar's lid) on the crop's patch grid pooled to
``pool x pool`` tokens. With ``crop.reader_classes`` set the model keeps those heads as its ``crop_reader``
(saved in the model's safetensors like every weight; the class names, and ``crop.reader_parts``: each shape's
part noun, in ``config.json``), and with ``thinking.keyframes.region_tags`` the thinking template writes,
after each region's box tokens, what the reader reads there as text (``region_tag``: `` red cube labelled
K``, `` white bottle labelled SODA with orange cap``). ``LionFSModel.region_tags`` is the one function
that turns crops' patch grids into tags: training (``train.thinking.insert_region_tags``) and the engine's
slow thinker (``thinking_template.build_thinking_inputs``) both call it. A reader without a ``patch`` head
(rounds 8 and 9) writes the tags it always wrote.
"""
from __future__ import annotations

from itertools import product

import torch
from torch import nn

from .vision import pool_patch_grid

ATTRIBUTES = ("label", "shape", "colour", "patch")
TAGGED = ATTRIBUTES[:3]  # the heads every tag-writing reader has (``patch`` is optional)
NO_LABEL = "none"  # the label class of an object with no printed label (class 0, as crop pretraining names it)
NOTHING = "nothing"  # the tag of a region the reader reads no object in (a ``none`` shape, proposer crops)
# A tag's part: `` with orange cap``, the ``patch`` colour and the shape's part noun (no article: 3 tokens of the
# demo tokenizer, whose `` an`` is 2).
PART = " with "


class CropReader(nn.Module):
    """Per attribute, a linear layer on the crop's patch grid pooled to ``pool x pool`` (layer-normed tokens);
    ``parts``: the part noun of each shape that has one (``{"bottle": "cap"}``), for the tags' ``patch``."""

    def __init__(self, width: int, pool: int, classes: dict[str, tuple[str, ...]], parts: dict[str, str] | None = None):
        super().__init__()
        self.pool = pool
        self.classes = {name: tuple(values) for name, values in classes.items()}
        self.parts = dict(parts or {})
        self._longest: tuple[object, int] | None = None  # (formatter, most tokens of a tag): longest_tag's cache
        self.norm = nn.LayerNorm(width)
        self.heads = nn.ModuleDict({name: nn.Linear(pool * pool * width, len(values)) for name, values in classes.items()})

    def forward(self, grid: torch.Tensor) -> dict[str, torch.Tensor]:
        """Patch grid ``[B, h, w, C]`` -> logits ``{attribute: [B, classes]}``."""
        pooled = pool_patch_grid(grid, self.pool)  # [B, pool*pool, C]
        flat = self.norm(pooled.to(self.norm.weight.dtype)).flatten(1)  # [B, pool*pool*C]
        return {name: head(flat) for name, head in self.heads.items()}

    @property
    def attributes(self) -> tuple[str, ...]:
        """The attributes it reads, in ``ATTRIBUTES`` order."""
        return tuple(name for name in ATTRIBUTES if name in self.classes)

    @torch.no_grad()
    def read(self, grid: torch.Tensor) -> list[dict[str, str]]:
        """Patch grids ``[B, h, w, C]`` -> per crop, each attribute's most likely class name."""
        missing = set(TAGGED) - set(self.classes)
        if missing:
            raise ValueError(f"a crop reader that writes tags needs heads for {sorted(missing)}")
        logits = self(grid)
        best = {name: logits[name].argmax(dim=1).tolist() for name in self.attributes}  # {attribute: [B]}
        return [{name: self.classes[name][best[name][i]] for name in self.attributes} for i in range(grid.shape[0])]

    def all_tags(self) -> list[str]:
        """Every tag the reader can write (for the template's token bound)."""
        names = self.attributes
        return sorted({region_tag(dict(zip(names, values)), self.parts)
                       for values in product(*(self.classes[n] for n in names))})

    def longest_tag(self, formatter) -> int:
        """Most tokens a tag takes in ``formatter``'s text (``StreamFormatter``), computed once per formatter:
        with a ``patch`` head a reader can write ~8,000 tags, 0.2 s to tokenize on one CPU core, per engine."""
        if self._longest is None or self._longest[0] is not formatter:
            self._longest = (formatter, max(len(formatter.text_ids(tag)) for tag in self.all_tags()))
        return self._longest[1]


def region_tag(read: dict[str, str], parts: dict[str, str] | None = None) -> str:
    """What the reader read -> the tag written after a region's box tokens: `` red cube labelled K``
    (`` red cube`` for an object with no printed label; `` nothing`` where a reader trained on proposer
    crops, with ``none`` shape classes, reads no object); then, where the read shape has a part noun in
    ``parts`` and the ``patch`` read is a colour, the part: `` white jar with green lid``."""
    if read["shape"] == NO_LABEL:
        return f" {NOTHING}"
    tag = f" {read['colour']} {read['shape']}"
    if read["label"] != NO_LABEL:
        tag = f"{tag} labelled {read['label']}"
    part, colour = (parts or {}).get(read["shape"]), read.get("patch", NO_LABEL)
    if part is None or colour == NO_LABEL:
        return tag
    return f"{tag}{PART}{colour} {part}"


def parse_region_tag(tag: str, classes: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """A region's tag (``region_tag``'s text, stripped or not) -> ``{attribute: class name}`` for every
    attribute of ``ATTRIBUTES``, the reader's ``classes`` naming the shapes (``none`` for every attribute of
    `` nothing``; ``patch`` ``none`` for a tag without a part)."""
    tag = tag.strip()
    if tag == NOTHING:
        return {name: NO_LABEL for name in ATTRIBUTES}
    tag, _, part = tag.partition(PART)
    patch = part.rpartition(" ")[0] or NO_LABEL  # "light blue cap" -> "light blue"
    head, _, label = tag.partition(" labelled ")
    shape = next((s for s in sorted(classes["shape"], key=len, reverse=True) if head.endswith(f" {s}")), None)
    if shape is None:
        raise ValueError(f"{tag!r} is not a tag of this reader (no shape of {classes['shape']})")
    return {"label": label or NO_LABEL, "shape": shape, "colour": head[: -len(shape) - 1], "patch": patch}
