"""Fast-path time per frame of several models, through the engine, in alternation on the same clips.

Each clip of a synthetic dataset is played at its native rate into a synchronous ``StreamEngine``
(lionfs_node's settings, answers off, so every model does the same work per frame): the rate gate
routes each frame, the towers encode it (general + egocentric), the LLM steps and decides. The
time of every ``process_frame`` call (ego-only frames included) is summed per decided frame.
Rounds alternate the models, so a machine whose load drifts (a shared CPU) biases none of them;
the median over decided frames is reported. ``lionfs bench --mode models`` runs it.
"""
from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from lionfs_ros.engine import StreamEngine

from .evaluate import EvalOptions, engine_config_for, load_eval_examples


@torch.no_grad()
def frame_times_ms(model, config, frames, fps: float) -> list[float]:
    """``frames`` uint8 ``[N, H, W, 3]`` at ``fps`` -> ms per decided frame (its ego-only frames included)."""
    engine = StreamEngine(model, config)
    times, pending = [], 0.0
    for index, rgb in enumerate(frames):
        start = time.perf_counter()
        decision = engine.process_frame(rgb, index / fps)
        pending += time.perf_counter() - start
        if decision is not None:
            times.append(pending * 1e3)
            pending = 0.0
    return times


def compare_models(model_dirs: list[str], data: str, clips: int, rounds: int, device: str = "cpu") -> dict:
    from lionfs_ros.data.synth.reader import load_episode, read_manifest
    from lionfs_ros.model import LionFSModel

    models = {d: LionFSModel.from_pretrained(d, device=device).eval() for d in model_dirs}
    configs = {d: dataclasses.replace(engine_config_for(m, EvalOptions())[0], answers=False) for d, m in models.items()}
    first = next(iter(models.values()))
    examples = load_eval_examples(data, first.config.stream.frame_fps, limit=clips)
    fps = float(read_manifest(data)["fps"])
    clip_frames = [load_episode(data, e.source.episode_id).frames for e in examples]
    samples: dict[str, list[float]] = {d: [] for d in models}
    for _ in range(rounds):
        for name, model in models.items():
            for frames in clip_frames:
                samples[name] += frame_times_ms(model, configs[name], frames, fps)
    return {name: {"median_ms": statistics.median(v), "decided_frames": len(v), "device": device}
            for name, v in samples.items()}
