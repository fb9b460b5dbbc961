"""The naive baseline, as VideoLLM-online's demo runs: plain HF calls, one frame at a time.

Fast path per frame: preprocess, the vision tower, the connector, then ``llm(inputs_embeds=...,
past_key_values=DynamicCache, use_cache=True)`` on ``[interval] + frame tokens``; P(interval) from
the last logits. Slow path: HF ``generate`` (greedy) from the thinking prompt on that cache.
Both feed exactly the token sequence the engine feeds, so their outputs can be compared.
"""
from __future__ import annotations

import numpy as np
import torch
from transformers import DynamicCache
from transformers.generation.streamers import BaseStreamer

from lionfs_ros.model.modeling_lionfs import stream_decision
from lionfs_ros.model.thinking_template import build_thinking_inputs

from ..timing import now


def margin(logits: torch.Tensor) -> float:
    """Top-1 minus top-2 logit: how close a greedy choice was to a tie."""
    top2 = logits.float().topk(2).values
    return float(top2[0] - top2[1])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class NaiveStream:
    def __init__(self, model, system_prompt: str | None = None):
        self.model, self.fmt = model, model.formatter
        self.cache = DynamicCache(config=model.llm.config)
        self.length = 0
        self.frames = 0
        self._text(self.fmt.system_ids(system_prompt) + self.fmt.stream_open_ids())

    def _forward(self, ids: list[int], embeds: torch.Tensor | None) -> torch.Tensor:
        x, _ = self.model.joint_embed(torch.tensor([ids]), None if embeds is None else embeds[None])
        out = self.model.llm(inputs_embeds=x, past_key_values=self.cache, use_cache=True)
        self.length += len(ids)
        return out.logits[0, -1]

    def _text(self, ids: list[int]) -> torch.Tensor:
        return self._forward(ids, None)

    @torch.no_grad()
    def frame(self, rgb: np.ndarray) -> tuple[float, int, float, float]:
        """One frame -> (P(interval), most likely token, its logit margin over the second, seconds)."""
        start = now()
        tokens = self.model.vision.frame_tokens(self.model.preprocess(rgb))
        embeds = self.model.embed_frames(tokens)[0]
        logits = self._forward(self.fmt.frame_ids(after_frame=self.frames > 0), embeds)
        p, _, top = stream_decision(logits, self.model.token_ids.interval, self.model.config.stream.interval_threshold)
        p, top = p.item(), int(top)
        elapsed = now() - start
        self.frames += 1
        return p, top, margin(logits), elapsed

    def rewind(self, length: int) -> None:
        """Drop what was fed after the first ``length`` tokens (HF 5: ``crop`` takes tokens to remove, negative)."""
        if self.length > length:
            self.cache.crop(length - self.length)
            self.length = length


class _Times(BaseStreamer):
    def __init__(self):
        self.times: list[float] = []

    def put(self, value):
        self.times.append(now())

    def end(self):
        pass


@torch.no_grad()
def naive_generate(stream: NaiveStream, keyframes: list[np.ndarray], new_tokens: int, keyframe_config,
                   rewind: bool = False) -> dict:
    """The thinking prompt (built by the same function the engine uses) in one HF forward, then HF ``generate``.

    ``generate`` continues from the cache: it gets ids for the whole sequence (the cached part as
    stand-ins it never embeds) ending with the prompt's first token, so it feeds only that token.
    ``rewind``: crop the cache back afterwards (so a run can be repeated on the same context).
    """
    model = stream.model
    device = model.device
    length = stream.length
    _sync(device)
    start = now()
    inputs = build_thinking_inputs(model, keyframes, after_stream=True, config=keyframe_config)
    logits = stream._forward(inputs.input_ids.tolist(), inputs.embeds)
    first = int(logits.argmax())
    _sync(device)
    ttft = now() - start
    ids = torch.zeros(1, stream.length + 1, dtype=torch.long, device=device)
    ids[0, -1] = first
    times = _Times()
    config = model.llm.generation_config
    eos, config.eos_token_id = config.eos_token_id, None  # decode the full length, EOS included, like the engine
    try:
        out = model.llm.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=stream.cache,
            max_new_tokens=new_tokens - 1, do_sample=False, streamer=times, pad_token_id=model.token_ids.eos,
            output_scores=True, return_dict_in_generate=True)
    finally:
        config.eos_token_id = eos
    _sync(device)
    generated = [first] + out.sequences[0, ids.shape[1]:].tolist()
    stream.length = ids.shape[1] + len(generated) - 2  # the cache holds all but the last generated token
    if rewind:
        stream.rewind(length)
    decode = [start + ttft] + times.times[1:]  # the streamer's first call repeats the given ids
    span = decode[-1] - decode[0]
    return {"ids": generated, "time_to_first_token_s": ttft,
            "tokens_per_second": (len(decode) - 1) / span if len(decode) > 1 and span > 0 else 0.0,
            "prompt_tokens": int(inputs.input_ids.numel()),
            "margins": [margin(logits)] + [margin(score[0]) for score in out.scores]}
