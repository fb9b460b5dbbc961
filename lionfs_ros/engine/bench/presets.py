"""Benchmark models: random weights of a given size (compute is the same as with real weights).

- ``tiny``: VideoLLM-online's shape at toy size (one SigLIP tower, no dropping); CPU, seconds.
- ``tiny-lionfs``: the full LION-FS design at toy size (SigLIP + CLIP ego tower, aggregation
  router, token dropping); the long-stream memory run uses it.
- ``llama3-8b``: SigLIP-L/16-384 + a Llama-3-8B-sized backbone (VideoLLM-online v1+'s shape, the
  paper's fast path without the ego stream); CUDA, bf16.
- ``lionfs-8b``: the full LION-FS 8B design: SigLIP-L/16-384 at 2 fps, a CLIP-B/16-sized egocentric
  tower (EgoVLPv2's video encoder is a TimeSformer-B/16: the same width and depth) at 8 fps,
  aggregation router, MoD token dropping (beta 0.5, interleaved layers), Llama-3-8B-sized backbone;
  a 640x480 camera at 8 fps; CUDA, bf16.

A tokenizer is trained on a few sentences (the backbone's vocabulary keeps its real size).
``bias_interval`` gives random weights a trained model's habit of staying silent on most frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lionfs_ros.model import LionFSConfig, LionFSModel
from lionfs_ros.model.tokenization import train_byte_bpe_tokenizer

CORPUS = [
    "A multimodal AI assistant is helping users with some activities.",
    " Below is their conversation, interleaved with the list of video frames received by the assistant.",
    "User: what is the person doing? Assistant: You pick up the knife and cut the red tomato on the board.",
    "You open the fridge, take the milk and close it. Then you pour it into the cup. [ ] , .",
    "Keyframes: regions: the hand holds a cup near the sink.",
]
TOKENIZER_VOCAB = 512

TINY_LLM = dict(model_type="llama", hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=2048)
TINY_SIGLIP = dict(model_type="siglip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=2, image_size=64, patch_size=8)
TINY_CLIP = dict(model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=2, image_size=64, patch_size=8)
LLAMA3_8B = dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192,
                 rope_theta=500000.0, rms_norm_eps=1e-5)
CLIP_B16 = dict(model_type="clip_vision_model", hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, image_size=224, patch_size=16)
SIGLIP_L16_384 = dict(model_type="siglip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                      num_attention_heads=16, image_size=384, patch_size=16)


@dataclass(frozen=True)
class Preset:
    name: str
    config: dict
    device: str
    dtype: torch.dtype
    frame_size: tuple[int, int]  # camera frames (H, W) fed to the engine
    kv_budget_tokens: int
    grid_sizes: tuple[int, ...]
    camera_fps: float = 2.0  # the camera; the general encoder decides at 2 fps, an ego tower takes every frame


PRESETS = {
    "tiny": Preset("tiny", {
        "vision": {"config": TINY_SIGLIP, "global_token": "pooler"},
        "llm": {"config": TINY_LLM},
    }, "cpu", torch.float32, (240, 320), 1024, (4, 8)),
    "tiny-lionfs": Preset("tiny-lionfs", {
        "vision": {"config": TINY_SIGLIP, "global_token": "pooler"},
        "ego": {"source": "tower", "frames_per_frame": 4, "tower": {"config": TINY_CLIP, "global_token": "cls"}},
        "aggregation": {"mode": "router"},
        "dropping": {"mode": "mod", "beta": 0.5, "layers": "interleaved"},
        "llm": {"config": TINY_LLM},
    }, "cpu", torch.float32, (240, 320), 1024, (4, 8), camera_fps=8.0),
    "llama3-8b": Preset("llama3-8b", {
        "vision": {"config": SIGLIP_L16_384, "global_token": "pooler"},
        "llm": {"config": LLAMA3_8B},
    }, "cuda", torch.bfloat16, (480, 640), 4096, (4, 6)),
    "lionfs-8b": Preset("lionfs-8b", {
        "vision": {"config": SIGLIP_L16_384, "global_token": "pooler"},
        "ego": {"source": "tower", "frames_per_frame": 4, "tower": {"config": CLIP_B16, "global_token": "cls"}},
        "aggregation": {"mode": "router"},
        "dropping": {"mode": "mod", "beta": 0.5, "layers": "interleaved"},
        "llm": {"config": LLAMA3_8B},
    }, "cuda", torch.bfloat16, (480, 640), 4096, (4, 6), camera_fps=8.0),
}
GENERAL_FPS = 2.0


def build_model(preset: Preset, device: str | None = None, seed: int = 0) -> LionFSModel:
    """Random weights of the preset's shapes, on the device (made there directly: no 16 GB CPU detour)."""
    torch.manual_seed(seed)
    tokenizer = train_byte_bpe_tokenizer(CORPUS * 8, TOKENIZER_VOCAB)
    data = {key: dict(value) for key, value in preset.config.items()}
    llm = dict(data["llm"]["config"])
    llm.setdefault("vocab_size", len(tokenizer) + 1)  # + the frame placeholder the model adds
    llm.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    data["llm"] = {**data["llm"], "config": llm}
    config = LionFSConfig.from_dict(data)
    device = device or preset.device
    with torch.device(device):
        model = LionFSModel.from_config(config, tokenizer=tokenizer, device=device, dtype=preset.dtype)
    return model.eval()


def camera_frames(count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """Smooth random frames with a moving bright square (something for the region proposer to find)."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    base = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:h, :w]
    frames = []
    side = max(h // 6, 2)
    for k in range(count):
        frame = base.copy()
        y, x = (k * 7) % (h - side), (k * 11) % (w - side)
        frame[y:y + side, x:x + side] = 255
        frames.append(frame)
    return frames


@torch.no_grad()
def bias_interval(model: LionFSModel, frames: list[np.ndarray], respond_rate: float, threshold: float,
                  scale: float = 1.0) -> float:
    """Raise the interval token's output row along the mean decision state so that about ``respond_rate`` of
    ``frames`` respond at ``threshold`` (random weights otherwise respond on every frame), times ``scale``
    (a margin: long contexts drift from the calibration frames). Returns the boost applied."""
    ids = model.formatter.encode([{"role": "stream", "num_frames": len(frames)}]).input_ids
    general = model.preprocess(np.stack(frames))
    ratio = model.config.ego.frames_per_frame
    ego = model.preprocess(np.repeat(np.stack(frames), ratio, axis=0), "ego") if model.ego is not None else None
    out = model.step_ids(ids, model.embed_frames(general, ego))
    ends = (ids == model.token_ids.placeholder).nonzero().squeeze(-1).view(-1, model.tokens_per_frame)[:, -1]
    hidden, logits = out.hidden_states[0, ends].float(), out.logits[0, ends].float()  # [F, d], [F, V]
    mean = hidden.mean(0)
    direction = mean / mean.norm() ** 2
    lift = hidden @ direction  # [F]: how much each frame's interval logit moves per unit of boost
    interval = model.token_ids.interval
    low, high = 0.0, 100.0
    for _ in range(40):  # bisection on the boost
        boost = (low + high) / 2
        boosted = logits.clone()
        boosted[:, interval] += boost * lift
        probs = boosted.softmax(-1)
        respond = (probs[:, interval] < threshold) | (probs.argmax(-1) != interval)
        low, high = (boost, high) if float(respond.float().mean()) > respond_rate else (low, boost)
    head = model.llm.get_output_embeddings().weight
    head[interval] += (scale * high * direction).to(head.dtype)
    return scale * high
