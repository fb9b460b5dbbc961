"""VideoLLM-online's demo loop, re-written minimal for the parity test (not our engine).

Read from showlab/videollm-online (demo/inference.py ``LiveInfer``, models/vision_live.py,
models/modeling_live.py, models/tokenization_live.py): a peft ``PeftModel`` over the base Llama
with a ``connector`` module; SigLIP pooler output + the patch grid average-pooled to 3x3; the chat
template's strings tokenized as rendered; ``last_ids`` are fed before the next frame (the interval
token after a silent frame, EOS + ``\\n[`` after an answer, a truncated answer's last token); a
question is answered before the first frame after it, or right after a frame at its very time
(without that frame's decision); answers are greedy, at most 100 tokens, EOS included.

Frames (data/utils.py ``ffmpeg_once``, run by demo/cli.py and for the training videos) are
letterboxed by ffmpeg: ``-sws_flags bicubic``, ``scale='if(gt(iw,ih),R,-2)':'if(gt(iw,ih),-2,R)'``
then ``pad=R:R:(ow-iw)/2:(oh-ih)/2:color='#000000'``: the long side scaled to R first (a square
frame: both), the short side to the aspect ratio rounded to the nearest multiple of 2 (libavfilter
``ff_scale_adjust_dimensions``: ``av_rescale``, half away from zero), then padded with black, the
offset truncated to an integer and rounded down to the yuv420p chroma grid (even). Stated here:
that geometry, with Pillow's bicubic (antialiased on downscale, like swscale's; its cubic has
a=-0.5 where swscale's default is B=0, C=0.6) and without the yuv420p + H.264 round trip of the
reference's cached video files, which no re-statement can reproduce.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from peft import PeftModel
from torch import nn
from PIL import Image
from transformers import LlamaForCausalLM, SiglipModel

SYSTEM = (
    "A multimodal AI assistant is helping users with some activities."
    " Below is their conversation, interleaved with the list of video frames received by the assistant."
)
INTERVAL = ","
THRESHOLD = 0.725
ANSWER_BUFFER = 100
POOL = 3


def ffmpeg_letterbox(rgb: np.ndarray, side: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> ``[side, side, 3]`` as the reference's ffmpeg scale + pad filters place it."""
    h, w, _ = rgb.shape
    if w > h:  # if(gt(iw,ih), R, -2): the height follows, a multiple of 2
        out_w, out_h = side, 2 * ((side * h + w) // (2 * w))
    else:
        out_w, out_h = 2 * ((side * w + h) // (2 * h)), side
    x, y = int((side - out_w) / 2) & ~1, int((side - out_h) / 2) & ~1
    canvas = np.zeros((side, side, 3), np.uint8)  # color='#000000'
    canvas[y:y + out_h, x:x + out_w] = np.asarray(Image.fromarray(rgb).resize((out_w, out_h), Image.Resampling.BICUBIC))
    return canvas


@dataclass
class ReferenceRun:
    decisions: dict[float, tuple[float, bool, int]] = field(default_factory=dict)  # time -> (P(interval), respond, argmax)
    answers: list[tuple[str | None, list[int]]] = field(default_factory=list)  # (question or None, generated ids)


class ReferenceDemo:
    def __init__(self, adapter_dir, llm_dir, siglip_dir, tokenizer, vision_width: int, answer_buffer: int = ANSWER_BUFFER):
        self.answer_buffer = answer_buffer
        base = LlamaForCausalLM.from_pretrained(llm_dir, dtype=torch.float32)
        width = base.config.hidden_size
        base.connector = nn.Sequential(nn.Linear(vision_width, width), nn.GELU(), nn.Linear(width, width))
        self.model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
        self.vision = SiglipModel.from_pretrained(siglip_dir).vision_model.eval()
        self.tok = tokenizer
        self.eos = tokenizer.eos_token_id
        self.interval = tokenizer.convert_tokens_to_ids(INTERVAL)
        text = lambda s: tokenizer.encode(s, add_special_tokens=False)  # apply_chat_template's tokenization
        self.start_ids = text(tokenizer.bos_token + SYSTEM + "\n" + "\n[")
        self.stream_prompt_ids = text("\n[")
        self.generation_ids = text("]\nAssistant:")
        self.query_ids = lambda q: text("]\nUser: " + q + "\nAssistant:")

    @torch.no_grad()
    def frame_embeds(self, frames: list[np.ndarray]) -> torch.Tensor:
        side = self.vision.config.image_size
        frames = np.stack([ffmpeg_letterbox(rgb, side) for rgb in frames])
        pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        pixels = (pixels - 0.5) / 0.5
        out = self.vision(pixels)
        hidden = out.last_hidden_state
        side = int(hidden.shape[1] ** 0.5)
        grid = hidden.reshape(hidden.shape[0], side, side, -1).permute(0, 3, 1, 2)
        pooled = F.adaptive_avg_pool2d(grid, POOL).flatten(2).permute(0, 2, 1)
        tokens = torch.cat([out.pooler_output[:, None], pooled], dim=1)
        return self.model.base_model.model.connector(tokens)  # [T, 10, d]

    def _embed(self, ids: list[int]) -> torch.Tensor:
        return self.model.get_input_embeddings()(torch.tensor([ids]))

    def _forward(self, embeds: torch.Tensor):
        out = self.model(inputs_embeds=embeds, past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        return out.logits[0, -1]

    def _respond(self, query: str | None, run: ReferenceRun) -> None:
        self.last_ids = self.query_ids(query) if query is not None else self.generation_ids
        embeds = self._embed(self.last_ids)
        generated = []
        for _ in range(self.answer_buffer):
            token = int(self._forward(embeds).argmax())
            generated.append(token)
            if token == self.eos:
                break
            embeds = self._embed([token])
        self.last_ids = generated[-1:]
        run.answers.append((query, generated))

    @torch.no_grad()
    def run(self, frames: list[np.ndarray], times: list[float], queries: list[tuple[float, str]]) -> ReferenceRun:
        run = ReferenceRun()
        self.past, self.last_ids = None, []
        frame_queue = deque(zip(times, self.frame_embeds(frames)))
        query_queue = deque(sorted(queries))
        while frame_queue:
            if query_queue and frame_queue[0][0] > query_queue[0][0]:
                self._respond(query_queue.popleft()[1], run)
                continue
            time, embeds = frame_queue.popleft()
            if self.past is None:
                self.last_ids = self.start_ids
            elif self.last_ids == [self.eos]:
                self.last_ids = self.last_ids + self.stream_prompt_ids
            logits = self._forward(torch.cat([self._embed(self.last_ids), embeds[None]], dim=1))
            if query_queue and time >= query_queue[0][0]:
                self._respond(query_queue.popleft()[1], run)
                continue
            probs = logits.softmax(dim=-1)
            p_interval, top = float(probs[self.interval]), int(probs.argmax())
            if p_interval < THRESHOLD:
                probs[self.interval] = 0
            self.last_ids = [int(probs.argmax())]
            respond = self.last_ids != [self.interval]
            run.decisions[time] = (p_interval, respond, top)
            if respond:
                self._respond(None, run)
        return run
