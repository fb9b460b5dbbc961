"""Teacher-forced LM-PPL / TimeDiff / Fluency / LM-Correctness (VideoLLM-online's stream_evaluate) on a replay.

The sample is what the engine saw, with the truth in place of its own answers: the system prompt,
the frames the engine decided on (its general-rate grid), each fused by the engine's own
``FrameEncoder`` (the frame plus the last `frames_per_frame` ego-routed frames, the oldest repeated
while fewer exist), and every true narration as an assistant turn right after the first decided frame at or
after its time (VideoLLM-online's ceil rule). Only the model's public API is used, so the numbers
mean the same as `lionfs eval`'s.

Memory stays bounded: fused tokens are kept only for as many frames as the backbone's positions
can hold in one forward pass; a longer bag is scored on its beginning, and the report says so.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from lionfs_ros.engine.fast_thinker import FrameEncoder

TIME_EPSILON = 1e-6  # a narration exactly on a frame's time belongs to that frame


@dataclass
class _Placement:
    frame: int  # index among the decided frames
    text: str


class TeacherForcedCollector:
    """Fed every frame with the engine's routing of it; keeps the fused tokens of decided frames."""

    def __init__(self, model, general_fps: float, threshold: float, system_prompt: str | None):
        self.model = model
        self.general_fps, self.threshold, self.system_prompt = general_fps, threshold, system_prompt
        self.encoder = FrameEncoder(model)
        self.max_positions = getattr(model.llm.config, "max_position_embeddings", None)
        per_frame = model.tokens_per_frame + 1  # placeholders + the interval token between frames
        self.max_frames = self.max_positions // per_frame if self.max_positions else None
        self.embeds: list[torch.Tensor] = []  # each [n, d] on CPU
        self.times: list[float] = []  # clock stamps of the decided frames
        self.frames_beyond = 0
        self.seconds = 0.0  # time spent here, kept out of the replay's wall time

    def add(self, rgb: np.ndarray, stamp_s: float, decided: bool, ego_only: bool) -> None:
        started = time.perf_counter()
        self._add(rgb, stamp_s, decided, ego_only)
        self.seconds += time.perf_counter() - started

    @torch.no_grad()
    def _add(self, rgb: np.ndarray, stamp_s: float, decided: bool, ego_only: bool) -> None:
        if ego_only:
            self.encoder.add_ego(rgb)
            return
        if not decided:
            return
        if self.max_frames is not None and len(self.embeds) >= self.max_frames:
            self.frames_beyond += 1
            return
        self.embeds.append(self.encoder.encode(rgb).detach().cpu())
        self.times.append(stamp_s)

    def _messages(self, placements: list[_Placement], num_frames: int) -> list[dict]:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt is not None else []
        fed = 0
        for placement in placements:
            count = placement.frame + 1 - fed
            if count > 0:
                messages.append({"role": "stream", "num_frames": count, "learn": True})
                fed = placement.frame + 1
            messages.append({"role": "assistant", "content": placement.text, "learn": True})
        if num_frames > fed:
            messages.append({"role": "stream", "num_frames": num_frames - fed, "learn": True})
        return messages

    def _place(self, truth_times: list[tuple[float, str]], num_frames: int) -> list[_Placement]:
        placements = []
        times = np.asarray(self.times[:num_frames])
        for clock_time, text in truth_times:
            later = np.nonzero(times >= clock_time - TIME_EPSILON)[0]
            if later.size:
                placements.append(_Placement(int(later[0]), text))
        return placements

    @torch.no_grad()
    def evaluate(self, truth: list[tuple[float, str]]) -> dict:
        """`truth`: (time on the frames' clock, text). Returns the metrics and what they cover."""
        from lionfs_ros.eval.stream_metrics import stream_evaluate

        num_frames = len(self.embeds)
        if not num_frames:
            return {"skipped": "no decided frame"}
        placements = self._place(truth, num_frames)
        sample = self.model.formatter.encode(self._messages(placements, num_frames))
        while self.max_positions and sample.input_ids.numel() > self.max_positions and num_frames > 1:
            # Text made it longer than the frame bound: drop frames from the end until it fits.
            num_frames -= 1
            placements = self._place(truth, num_frames)
            sample = self.model.formatter.encode(self._messages(placements, num_frames))
        if not placements:
            return {"skipped": "no true narration falls on the scored frames"}
        embeds = torch.stack(self.embeds[:num_frames]).to(self.model.device)
        metrics = stream_evaluate(self.model, sample.input_ids, sample.labels, frame_embeds=embeds,
                                  threshold=self.threshold, frame_fps=self.general_fps)
        scored_to = self.times[num_frames - 1]
        return {**metrics.to_dict(), "frames": num_frames, "turns": len(placements), "threshold": self.threshold,
                "frame_fps": self.general_fps, "scored_until_clock_s": scored_to,
                "covers_whole_bag": self.frames_beyond == 0 and num_frames == len(self.embeds)
                and len(placements) == len(truth)}
