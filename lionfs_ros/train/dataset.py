"""Stream examples -> tokenized samples with their frames, and the batch collator.

A sample is one whole clip: its conversation encoded by the model's ``StreamFormatter`` and its
frames as the model's encoders take them (uint8 pixels at each encoder's size, or precomputed
features). The collator right-pads the token rows and concatenates the frames of the batch in
reading order, which is the order ``LionFSModel.joint_embed`` fills placeholders in.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from lionfs_ros.data.frame_cache import FrameCache, load_frames
from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.data.stream_examples import StreamExample, to_messages
from lionfs_ros.data.synth_objects import labelled_objects
from lionfs_ros.model.stream_format import StreamFormatter, pad_batch

from .thinking import ThinkingSampler, collate_thinking


def truncate(example: StreamExample, max_frames: int | None) -> StreamExample:
    """The example's first ``max_frames`` frames and the turns said during them."""
    if max_frames is None or example.num_frames <= max_frames:
        return example
    kept = [i for i, t in enumerate(example.turns) if example.frame_of(t.time) < max_frames]
    new_index = {old: new for new, old in enumerate(kept)}
    turns = []
    for old in kept:
        turn = example.turns[old]
        if turn.answer_of is not None:
            turn = replace(turn, answer_of=new_index[turn.answer_of])
        turns.append(turn)
    return replace(example, num_frames=max_frames, turns=turns)


class StreamDataset(Dataset):
    def __init__(
        self,
        examples: list[StreamExample],
        formatter: StreamFormatter,
        recipe: FrameRecipe,
        max_frames: int | None = None,
        cache: FrameCache | None = None,
        thinking: ThinkingSampler | None = None,
    ):
        self.examples = [truncate(e, max_frames) for e in examples]
        self.formatter = formatter
        self.recipe = recipe
        self.cache = cache
        self.thinking = thinking  # None: plain samples (data.thinking 'none')

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        messages = to_messages(example)
        sample = self.formatter.encode(messages)
        if sample.num_frames != example.num_frames:
            raise ValueError(f"example {example.example_id}: {sample.num_frames} frames in the text, {example.num_frames} in the clip")
        frames = load_frames(example, self.recipe, self.cache)
        item = {"input_ids": sample.input_ids, "labels": sample.labels, "frames": frames}
        if self.thinking is not None:
            if frames.general_is_features:
                raise ValueError(f"example {example.example_id}: the thinking template needs pixels, not features")
            objects = labelled_objects(example.source) if self.thinking.needs_objects else None
            thought = self.thinking.sample(messages, sample, frames.general, objects)
            item.update(input_ids=thought.input_ids, labels=thought.labels, thinking=thought,
                        keyframe_pixels=frames.general[thought.keyframes],
                        crop_pixels=self.thinking.crops(frames.general, thought))
        return item


@dataclass
class StreamCollator:
    pad_id: int
    ignore_index: int

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        samples = [_Row(item["input_ids"], item["labels"]) for item in items]
        batch = pad_batch(samples, self.pad_id, self.ignore_index)
        if "thinking" in items[0]:
            batch.update(collate_thinking(items, batch["input_ids"].shape[1]))
        frames = [item["frames"] for item in items]
        general_key = "general" if frames[0].general_is_features else "general_pixels"
        batch[general_key] = _concat([f.general for f in frames])
        if frames[0].ego is not None:
            ego_key = "ego" if isinstance(frames[0].ego, torch.Tensor) else "ego_pixels"
            batch[ego_key] = _concat([f.ego for f in frames])
        return batch


@dataclass
class _Row:
    input_ids: torch.Tensor
    labels: torch.Tensor


def _concat(parts: list) -> torch.Tensor:
    tensors = [p if isinstance(p, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(p)) for p in parts]
    return torch.cat(tensors, dim=0)
