"""The naive baseline, as VideoLLM-online's demo runs: plain per-frame calls, one camera frame at a time.

Fast path per decided frame: preprocess on the CPU, the vision tower, the connector (and, with an
egocentric source, the aggregation router over the last ego frames), then one LLM pass on
``[interval] + frame tokens``; P(interval) from the last logits. An ego-only frame (a model with
an ego tower, camera faster than the general rate) runs preprocess + the ego tower only.
The LLM pass: without token dropping, HF's own ``llm(inputs_embeds=..., past_key_values=DynamicCache)``;
with dropping (which HF's layers cannot do) the model's own ``step`` over a ``StreamKVCache``,
the reference implementation (equal to one full-sequence forward).
Slow path: the same thinking prompt the engine builds (given by the caller), then greedy decoding
(HF ``generate``, or the model's ``step`` one token at a time with dropping).
Both feed exactly the token sequence the engine feeds, so their outputs can be compared.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch
from transformers import DynamicCache
from transformers.generation.streamers import BaseStreamer

from lionfs_ros.model.modeling_lionfs import stream_decision

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
        self.dropping = model.token_dropping is not None
        self.cache = model.new_cache() if self.dropping else DynamicCache(config=model.llm.config)
        self.length = 0
        self.frames = 0
        window = model.config.ego.frames_per_frame if model.ego is not None else 1
        self.ego: deque[torch.Tensor] = deque(maxlen=window)  # each [1, n, C']
        self._text(self.fmt.system_ids(system_prompt) + self.fmt.stream_open_ids())

    def _forward(self, ids: list[int], embeds: torch.Tensor | None, visual=None) -> torch.Tensor:
        x, marks = self.model.joint_embed(torch.tensor([ids]), None if embeds is None else embeds.reshape(1, -1, embeds.shape[-1]))
        if self.dropping:
            if visual is not None:
                marks = torch.as_tensor(visual, dtype=torch.bool, device=x.device).reshape(1, -1)
            out = self.model.step(x, marks, self.cache)
        else:
            out = self.model.llm(inputs_embeds=x, past_key_values=self.cache, use_cache=True)
        self.length += len(ids)
        return out.logits[0, -1]

    def _text(self, ids: list[int]) -> torch.Tensor:
        return self._forward(ids, None)

    @torch.no_grad()
    def ego_frame(self, rgb: np.ndarray) -> float:
        """An ego-only frame -> seconds (preprocess + the ego tower, synchronized)."""
        start = now()
        self.ego.append(self.model.ego.frame_tokens(self.model.preprocess(rgb, "ego")))
        _sync(self.model.device)
        return now() - start

    @torch.no_grad()
    def frame(self, rgb: np.ndarray) -> tuple[float, int, float, float]:
        """One decided frame -> (P(interval), most likely token, its logit margin over the second, seconds)."""
        start = now()
        tokens = self.model.vision.frame_tokens(self.model.preprocess(rgb))
        if self.model.ego is None:
            embeds = self.model.embed_frames(tokens)[0]
        else:
            self.ego.append(self.model.ego.frame_tokens(self.model.preprocess(rgb, "ego")))
            held = list(self.ego)
            window = torch.cat([held[0]] * (self.ego.maxlen - len(held)) + held)  # the oldest repeated at the start
            embeds = self.model.embed_frames(tokens, window)[0]
        logits = self._forward(self.fmt.frame_ids(after_frame=self.frames > 0), embeds)
        p, _, top = stream_decision(logits, self.model.token_ids.interval, self.model.config.stream.interval_threshold)
        p, top = p.item(), int(top)
        elapsed = now() - start
        self.frames += 1
        return p, top, margin(logits), elapsed


class _Times(BaseStreamer):
    def __init__(self):
        self.times: list[float] = []

    def put(self, value):
        self.times.append(now())

    def end(self):
        pass


@torch.no_grad()
def naive_generate(stream: NaiveStream, inputs, new_tokens: int) -> dict:
    """``inputs`` (the engine's thinking prompt, ``keyframes.ThinkingInputs``) in one forward, then greedy decoding
    of ``new_tokens`` (EOS ignored, like the engine's bench run). The stream's context is left as it was."""
    model = stream.model
    device = model.device
    _sync(device)
    start = now()
    if stream.dropping:
        return _generate_dropping(stream, inputs, new_tokens, start)
    length = stream.length
    logits = stream._forward(inputs.input_ids.tolist(), inputs.embeds)
    first = int(logits.argmax())
    _sync(device)
    ttft = now() - start
    # ``generate`` continues from the cache: ids for the whole sequence (the cached part as stand-ins it never
    # embeds) ending with the first new token, so it feeds only that token.
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
    held = ids.shape[1] + len(generated) - 2  # the cache holds all but the last generated token
    stream.cache.crop(length - held)  # HF 5: ``crop`` takes the tokens to remove, negative
    stream.length = length
    decode = [start + ttft] + times.times[1:]  # the streamer's first call repeats the given ids
    return _result(generated, ttft, decode, inputs, [margin(logits)] + [margin(score[0]) for score in out.scores])


def _generate_dropping(stream: NaiveStream, inputs, new_tokens: int, start: float) -> dict:
    device = stream.model.device
    saved, length = stream.cache, stream.length
    stream.cache = saved.fork()  # grows on its own; the stream's cache is left untouched
    try:
        logits = stream._forward(inputs.input_ids.tolist(), inputs.embeds, inputs.visual_mask)
        generated, margins, decode = [], [], []
        for step in range(new_tokens):
            token = int(logits.argmax())
            margins.append(margin(logits))
            generated.append(token)
            decode.append(now())
            if step == 0:
                ttft = decode[0] - start
            if step + 1 < new_tokens:
                logits = stream._forward([token], None)
        _sync(device)
    finally:
        stream.cache, stream.length = saved, length
    return _result(generated, ttft, decode, inputs, margins)


def _result(generated, ttft, decode, inputs, margins) -> dict:
    span = decode[-1] - decode[0] if decode else 0.0
    return {"ids": generated, "time_to_first_token_s": ttft,
            "tokens_per_second": (len(decode) - 1) / span if len(decode) > 1 and span > 0 else 0.0,
            "prompt_tokens": int(inputs.input_ids.numel()), "prompt_ids": inputs.input_ids.tolist(),
            "margins": margins}
