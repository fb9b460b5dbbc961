"""The static backend: preallocated KV buffers, CUDA graphs for the per-frame and per-token steps.

What runs as a graph (replayed with no Python in between):
- the general (and ego) vision tower on one frame, normalization included (``GraphedTower``);
- the LLM step of a decided frame (interval + n placeholders) on the main context;
- the LLM step of one generated token on the slow thinker's context.
Everything else (text pieces, prompts, the first frame after a text turn, eviction) runs the same
code eagerly. Two states exist: the main one (fast thread, ``kv_budget_tokens`` plus one feed) and
the slow one (the fork: the main context copied in, plus the thinking template and the answer).
Each works on its own CUDA stream, so the slow thread's decoding and the fast thread's frames
overlap on the GPU.

The same classes run on the CPU without graphs (tests check them against ``DynamicLMState``).
"""
from __future__ import annotations

import numpy as np
import torch

from lionfs_ros.model.backbone import has_lora
from lionfs_ros.model.image_processing import DeviceImageProcessor

from .bounds import portable_prompt_bound, token_bounds
from .config import EngineConfig
from .lm_state import LENGTH_DEPENDENT_ROPE, LMState, renumbering, rope_rotation
from .static_decoder import POSITION_SENTINEL, SPLIT_CHUNK, FusedDecoder

GRAPH_WARMUP_RUNS = 2  # eager runs on a side stream before capture (cuBLAS handles, workspaces)
CAPACITY_ALIGN = SPLIT_CHUNK  # buffer lengths: whole chunks for split attention (and aligned mask rows)
SUPPORTED_MODEL_TYPES = ("llama", "qwen2")


def static_backend_supported(model) -> str | None:
    """None if the static backend can run this model, else the reason it cannot."""
    if model.token_dropping is not None:
        return "token dropping gives each layer its own cache (use the dynamic backend)"
    if has_lora(model.llm):
        return "LoRA layers are not merged (call model.merge_lora() first)"
    if model.llm.config.model_type not in SUPPORTED_MODEL_TYPES:
        return f"backbone type {model.llm.config.model_type!r} is not one of {SUPPORTED_MODEL_TYPES}"
    if getattr(model.llm.config, "sliding_window", None) and getattr(model.llm.config, "use_sliding_window", False):
        return "sliding-window attention is not supported"
    if getattr(model.llm.get_decoder().rotary_emb, "rope_type", "default") in LENGTH_DEPENDENT_ROPE:
        return "length-dependent RoPE"
    return None


def _capture(body, capture_stream: torch.cuda.Stream, pool, after=None) -> tuple[torch.cuda.CUDAGraph, object]:
    """Warm ``body`` up, then capture it, both on ``capture_stream``; ``after`` undoes what the runs changed.

    Each graph owner (main state, slow state, each tower) captures on a stream of its own: cuBLAS
    keeps one workspace per stream and a graph bakes in the one of its capture stream, so graphs
    captured on a shared stream would race on it when two threads replay them at the same time.
    """
    capture_stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(capture_stream):
        for _ in range(GRAPH_WARMUP_RUNS):
            body()
            if after:
                after()
    torch.cuda.current_stream().wait_stream(capture_stream)
    graph = torch.cuda.CUDAGraph()
    # thread_local: the other engine thread may use the GPU while this one captures.
    with torch.cuda.graph(graph, pool=pool, stream=capture_stream, capture_error_mode="thread_local"):
        out = body()
    if after:
        after()
    return graph, out


class GraphedTower:
    """RGB frame -> tokens ``[1, n, C]`` of one vision encoder: exact resize on the device, then
    normalization and the tower replayed from a CUDA graph."""

    def __init__(self, encoder, device: torch.device):
        self.encoder = encoder
        self.prep = DeviceImageProcessor(encoder.processor, device)
        self.resized = torch.zeros(*self.prep.size, 3, dtype=torch.uint8, device=device)
        self.capture_stream = torch.cuda.Stream(device)
        self.graph = self.out = None

    def _body(self) -> torch.Tensor:
        return self.encoder.frame_tokens(self.prep.normalize(self.resized))

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        self.resized.copy_(self.prep.resize(rgb))
        if self.graph is None:
            self.graph, self.out = _capture(self._body, self.capture_stream, None)
        self.graph.replay()
        return self.out.clone()


class StaticLMState(LMState):
    def __init__(self, model, fused: FusedDecoder, capacity: int, use_graphs: bool, frame_length: int | None = None):
        self.model, self.fused, self.capacity = model, fused, capacity
        device, dtype = model.device, model.dtype
        shape = (len(fused.layers), fused.num_kv_heads, capacity, fused.head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)  # [layers, H_kv, capacity, D]
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.slot_pos = torch.full((capacity,), POSITION_SENTINEL, dtype=torch.long, device=device)
        self.fill_t = torch.zeros((), dtype=torch.long, device=device)
        self.next_pos_t = torch.zeros((), dtype=torch.long, device=device)
        self.fill = self.next_pos = 0
        self.use_graphs = use_graphs and device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.capture_stream = torch.cuda.Stream(device) if self.use_graphs else None
        self.frame_length = frame_length  # the one embeds length with a graph (a decided frame)
        self._graphs: dict[str, tuple] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.use_graphs else None
        self._rotate = None
        self.in_use = False
        if self.use_graphs:
            hidden = model.hidden_size
            self._frame_in = torch.zeros(frame_length or 1, hidden, dtype=dtype, device=device)
            self._token_in = torch.zeros(1, dtype=torch.long, device=device)

    @property
    def next_position(self) -> int:
        return self.next_pos

    @property
    def num_tokens(self) -> int:
        return self.fill

    def nbytes(self) -> int:
        return 2 * self.keys.numel() * self.keys.element_size() + self.slot_pos.numel() * 8

    # Steps.
    def _run(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        return self.fused.forward(x, self.keys, self.values, self.slot_pos, self.fill_t, self.next_pos_t, fast=fast)

    def _graph(self, kind: str, body):
        if kind not in self._graphs:
            fill, pos, length = self.fill, self.next_pos, self._length(kind)

            def undo():
                self.fill_t.fill_(fill)
                self.next_pos_t.fill_(pos)
                self.slot_pos[fill:fill + length] = POSITION_SENTINEL

            self._graphs[kind] = _capture(body, self.capture_stream, self._pool, after=undo)
        return self._graphs[kind]

    def _length(self, kind: str) -> int:
        return 1 if kind == "token" else self.frame_length

    @torch.no_grad()
    def feed(self, ids, embeds=None, visual=None) -> torch.Tensor:
        ids = list(ids)
        if self.fill + len(ids) > self.capacity:
            raise RuntimeError(f"static KV buffer full: {self.fill} + {len(ids)} tokens > capacity {self.capacity}")
        if self.stream is None:
            return self._feed(ids, embeds)
        self.stream.wait_stream(torch.cuda.current_stream())  # embeds were made on the caller's stream
        with torch.cuda.stream(self.stream):
            logits = self._feed(ids, embeds)
        self.stream.synchronize()  # the caller reads the decision / token right away
        return logits

    def _feed(self, ids: list[int], embeds) -> torch.Tensor:
        if self.use_graphs and embeds is None and len(ids) == 1:
            self._token_in.fill_(ids[0])
            embed_tokens = self.model.llm.get_input_embeddings()
            graph, out = self._graph("token", lambda: self._run(embed_tokens(self._token_in), fast=True))
            graph.replay()
        else:
            x, _ = self.model.joint_embed(torch.as_tensor(ids, dtype=torch.long)[None],
                                          None if embeds is None else embeds.reshape(1, -1, embeds.shape[-1]))
            if self.use_graphs and len(ids) == self.frame_length:
                self._frame_in.copy_(x[0])
                graph, out = self._graph("frame", lambda: self._run(self._frame_in, fast=True))
                graph.replay()
            else:
                out = self._run(x[0])
        self.fill += len(ids)
        self.next_pos += len(ids)
        return out[-1]

    # Fork, reset, eviction.
    @torch.no_grad()
    def load_from(self, other: "StaticLMState") -> "StaticLMState":
        """Become a copy of ``other``'s context (the fork for the slow thinker)."""
        if self.in_use:
            raise RuntimeError("the slow thinker's buffer is still in use by the previous fork")
        n = other.fill
        if n > self.capacity:
            raise RuntimeError(f"cannot fork {n} tokens into a buffer of {self.capacity}")
        stream = other.stream
        with torch.cuda.stream(stream) if stream is not None else _nullcontext():
            if stream is not None:
                stream.wait_stream(torch.cuda.current_stream())
            self.keys[:, :, :n].copy_(other.keys[:, :, :n])
            self.values[:, :, :n].copy_(other.values[:, :, :n])
            self.slot_pos.fill_(POSITION_SENTINEL)
            self.slot_pos[:n].copy_(other.slot_pos[:n])
            self.fill_t.fill_(n)
            self.next_pos_t.fill_(other.next_pos)
        if stream is not None:
            stream.synchronize()
        self.fill, self.next_pos, self.in_use = n, other.next_pos, True
        return self

    def reset(self) -> "StaticLMState":
        if self.in_use:
            raise RuntimeError("the slow thinker's buffer is in use")
        self.slot_pos.fill_(POSITION_SENTINEL)
        self.fill_t.zero_()
        self.next_pos_t.zero_()
        self.fill = self.next_pos = 0
        self.in_use = True
        return self

    def release(self) -> None:
        self.in_use = False

    def fork(self) -> "StaticLMState":
        raise RuntimeError("a static state forks through its backend (one preallocated slow buffer)")

    @torch.no_grad()
    def evict(self, keep: torch.Tensor, reindex: bool) -> None:
        n_before = self.fill
        held = self.slot_pos[:n_before]  # positions, increasing along the slots
        idx = keep.to(held.device)[held].nonzero().squeeze(-1)
        n = int(idx.numel())
        new_pos = held[idx]
        if reindex:
            if self._rotate is None:
                self._rotate = rope_rotation(self.model.llm.get_decoder().rotary_emb)
            mapping, self.next_pos = renumbering(keep.to(held.device))
            moved = mapping[new_pos]
            delta = (moved - new_pos)[None]  # [1, n]
            for layer in range(self.keys.shape[0]):  # one layer at a time: bounded temporary memory
                self.keys[layer, :, :n] = self._rotate(self.keys[layer, :, idx][None], delta)[0]
                self.values[layer, :, :n] = self.values[layer, :, idx]
            new_pos = moved
            self.next_pos_t.fill_(self.next_pos)
        else:
            for layer in range(self.keys.shape[0]):
                self.keys[layer, :, :n] = self.keys[layer, :, idx]
                self.values[layer, :, :n] = self.values[layer, :, idx]
        self.slot_pos[:n] = new_pos
        self.slot_pos[n:n_before] = POSITION_SENTINEL
        self.fill = n
        self.fill_t.fill_(n)


def _align(n: int) -> int:
    return -(-n // CAPACITY_ALIGN) * CAPACITY_ALIGN


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class StaticBackend:
    """Main + slow static states and graphed vision towers for one model."""

    name = "static"

    def __init__(self, model, cfg: EngineConfig, use_graphs: bool | None = None):
        reason = static_backend_supported(model)
        if reason is not None:
            raise ValueError(f"static backend: {reason}")
        self.model = model
        self.use_graphs = model.device.type == "cuda" if use_graphs is None else use_graphs
        bounds = token_bounds(model, cfg)
        main_capacity = _align(cfg.kv_budget_tokens + bounds.largest_feed)
        slow_capacity = _align(max(main_capacity + bounds.thinking + cfg.max_new_tokens,
                                   portable_prompt_bound(model, cfg) + cfg.max_new_tokens))
        fused = FusedDecoder(model.llm, compile=cfg.compile and self.use_graphs, attention=cfg.attention)
        frame_length = model.tokens_per_frame + 1
        self.main = StaticLMState(model, fused, main_capacity, self.use_graphs, frame_length)
        self.slow = StaticLMState(model, fused, slow_capacity, self.use_graphs)
        self.main.fork = lambda: self.slow.load_from(self.main)
        self.main.release = lambda: None

    def towers(self):
        if not self.use_graphs:
            return None, None
        m = self.model
        return GraphedTower(m.vision, m.device), GraphedTower(m.ego, m.device) if m.ego is not None else None

    def main_state(self) -> LMState:
        return self.main

    def fresh_state(self) -> LMState:
        return self.slow.reset()
