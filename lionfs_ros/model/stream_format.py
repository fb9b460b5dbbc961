"""Stream format: conversations with video -> token ids, labels and masks.

Layout (VideoLLM-online's, every string from ``StreamConfig``)::

    <bos>{system prompt}\\n
    \\n[<v>*n,<v>*n,<v>*n]\\nUser: {question}
    \\nAssistant: {answer}<eos>
    \\n[<v>*n,<v>*n]\\nAssistant: {answer}<eos>

``<v>*n`` is one frame (``n`` = tokens per frame placeholders); frames are separated by the
interval token. Text is tokenized piece by piece (a turn header, a turn body), the same pieces
the online engine feeds, so training and streaming see identical ids.

Labels (``labels[i]`` is the target for the token after position ``i``):
  - stream loss: at the last placeholder of every learned frame the target is the next token:
    the interval token (stay silent) or the first token of whatever follows the stream
    (respond now);
  - LM loss: for a learned assistant turn, every token of the turn after its header's first
    token (so ``Assistant``, ``:``, the answer and EOS).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from .configuration_lionfs import StreamConfig
from .tokenization import StreamTokenIds, prepare_tokenizer

ROLES = ("system", "stream", "user", "assistant")


@dataclass
class StreamSample:
    input_ids: torch.Tensor  # [L] long
    labels: torch.Tensor  # [L] long, ignore_index where not learned
    visual_mask: torch.Tensor  # [L] bool, frame placeholders
    stream_mask: torch.Tensor  # [L] bool, learned per-frame decision positions
    num_frames: int
    spans: list[tuple[int, int]] = field(default_factory=list)  # [start, stop) of each message's ids


class StreamFormatter:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, stream: StreamConfig, tokens_per_frame: int):
        self.tokenizer = tokenizer
        self.cfg = stream
        self.tokens_per_frame = tokens_per_frame
        self.ids: StreamTokenIds = prepare_tokenizer(tokenizer, stream)

    def text_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) if text else []

    # Pieces the online engine feeds, in order.
    def system_ids(self, prompt: str | None = None) -> list[int]:
        bos = [self.ids.bos] if self.ids.bos is not None else []
        return bos + self.text_ids((self.cfg.system_prompt if prompt is None else prompt) + self.cfg.system_suffix)

    def stream_open_ids(self) -> list[int]:
        return self.text_ids(self.cfg.stream_open)

    def frame_ids(self, after_frame: bool) -> list[int]:
        """One frame's ids; ``after_frame``: the interval token that separates it from the previous frame."""
        return ([self.ids.interval] if after_frame else []) + [self.ids.placeholder] * self.tokens_per_frame

    def user_ids(self, text: str, after_stream: bool) -> list[int]:
        return self.text_ids((self.cfg.stream_close if after_stream else "") + self.cfg.user_prefix + text)

    def assistant_header_ids(self, after_stream: bool) -> list[int]:
        return self.text_ids((self.cfg.stream_close if after_stream else "") + self.cfg.assistant_prefix)

    def assistant_body_ids(self, text: str) -> list[int]:
        return self.text_ids(self.cfg.content_separator + text) + [self.ids.eos]

    # The same turns as VideoLLM-online's demo renders them (``stream.tokenize: rendered``): the text
    # between two frames is one string, so BPE merges may cross what are two pieces above.
    @property
    def rendered(self) -> bool:
        return self.cfg.tokenize == "rendered"

    def opening_ids(self, prompt: str | None = None) -> list[int]:
        """The system prompt and the stream opener, before the first frame."""
        if not self.rendered:
            return self.system_ids(prompt) + self.stream_open_ids()
        bos = [self.ids.bos] if self.ids.bos is not None else []
        prompt = self.cfg.system_prompt if prompt is None else prompt
        return bos + self.text_ids(prompt + self.cfg.system_suffix + self.cfg.stream_open)

    def question_ids(self, text: str, after_stream: bool) -> tuple[list[int], list[int]]:
        """A question and the assistant header after it, as ``(fed now, opens the answer)``.

        ``pieces``: the user turn, then the header on its own. ``rendered``: the two as one string,
        split before its last token (so the answer still starts with a fed token)."""
        if not self.rendered:
            return self.user_ids(text, after_stream), self.assistant_header_ids(after_stream=False)
        ids = self.text_ids((self.cfg.stream_close if after_stream else "") + self.cfg.user_prefix + text + self.cfg.assistant_prefix)
        return ids[:-1], ids[-1:]

    def encode(self, messages: list[dict]) -> StreamSample:
        """Messages: ``{"role": "system"|"user"|"assistant", "content": str, "learn": bool}`` and
        ``{"role": "stream", "num_frames": int, "learn": bool | int}`` (an int learns that many first frames).
        A missing system message gets the configured system prompt. Consecutive stream messages
        continue one stream.
        """
        ids: list[int] = []
        learn: list[int] = []
        decisions: list[int] = []
        spans: list[tuple[int, int]] = []
        prev = None
        for turn, msg in enumerate(messages):
            begin = len(ids)
            role = msg.get("role")
            if role not in ROLES:
                raise ValueError(f"message {turn}: role {role!r} is not one of {ROLES}")
            if role == "system":
                if turn:
                    raise ValueError("a system message may only come first")
                ids += self.system_ids(msg.get("content"))
            elif role == "stream":
                ids, decisions = self._encode_stream(msg, ids, decisions, continues=prev == "stream")
            elif role == "user":
                ids += self.user_ids(msg["content"], after_stream=prev == "stream")
            else:
                start = len(ids)
                ids += self.assistant_header_ids(after_stream=prev == "stream") + self.assistant_body_ids(msg["content"])
                if msg.get("learn", False):
                    learn += range(start, len(ids) - 1)
            spans.append((begin, len(ids)))
            if turn == 0 and role != "system":
                offset = len(self.system_ids())
                ids = self.system_ids() + ids
                learn, decisions = [p + offset for p in learn], [p + offset for p in decisions]
                spans = [(a + offset, b + offset) for a, b in spans]
            if role != "stream" or msg.get("num_frames", 0) > 0:
                prev = role
        sample = self._sample(ids, learn, decisions)
        sample.spans = spans
        return sample

    def _encode_stream(self, msg: dict, ids: list[int], decisions: list[int], continues: bool):
        num_frames = int(msg.get("num_frames", 0))
        if num_frames < 0:
            raise ValueError(f"stream num_frames must be >= 0, got {num_frames}")
        flag = msg.get("learn", False)
        num_learned = num_frames if flag is True else (0 if flag is False else int(flag))
        if num_frames and not continues:
            ids = ids + self.stream_open_ids()
        for frame in range(num_frames):
            ids = ids + self.frame_ids(after_frame=continues or frame > 0)
            if frame < num_learned:
                decisions = decisions + [len(ids) - 1]
        return ids, decisions

    def _sample(self, ids: list[int], learn: list[int], decisions: list[int]) -> StreamSample:
        input_ids = torch.tensor(ids, dtype=torch.long)
        labels = torch.full_like(input_ids, self.cfg.ignore_index)
        stream_mask = torch.zeros(len(ids), dtype=torch.bool)
        for pos in learn + decisions:
            if pos + 1 < len(ids):
                labels[pos] = input_ids[pos + 1]
        for pos in decisions:
            stream_mask[pos] = pos + 1 < len(ids)
        visual = input_ids == self.ids.placeholder
        return StreamSample(input_ids, labels, visual, stream_mask, int(visual.sum()) // self.tokens_per_frame)


def pad_batch(samples: list[StreamSample], pad_id: int, ignore_index: int) -> dict[str, torch.Tensor]:
    """Right-pad samples into ``input_ids``, ``labels``, ``attention_mask`` ``[B, L_max]``."""
    longest = max(s.input_ids.numel() for s in samples)
    out = {
        "input_ids": torch.full((len(samples), longest), pad_id, dtype=torch.long),
        "labels": torch.full((len(samples), longest), ignore_index, dtype=torch.long),
        "attention_mask": torch.zeros(len(samples), longest, dtype=torch.long),
    }
    for row, s in enumerate(samples):
        n = s.input_ids.numel()
        out["input_ids"][row, :n] = s.input_ids
        out["labels"][row, :n] = s.labels
        out["attention_mask"][row, :n] = 1
    return out
