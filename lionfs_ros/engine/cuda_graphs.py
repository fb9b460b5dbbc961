"""The static backend's parts: preallocated KV buffers, CUDA graphs for the per-frame and per-token steps
(the backend itself, ``StaticBackend``, sits beside the dynamic one in ``backends.py``).

What runs as a graph (replayed with no Python in between):
- the general (and ego) vision tower on one frame, and a decided frame's connectors and aggregation router
  (``graphed_frame.py``: ``GraphedTower``, ``GraphedFusion``);
- the LLM step of a decided frame (interval + n placeholders) on the main context, token dropping
  included (``static_decoder``: a fixed number of kept tokens per dropping layer, top-k on the device);
- the LLM step of one generated token on the slow thinker's context.
Everything else (text pieces, prompts, the first frame after a text turn, eviction) runs the same
code eagerly. Two states exist: the main one (fast thread, ``kv_budget_tokens`` plus one feed) and
the slow one (the fork: the main context copied in, plus the thinking template and the answer).
Each works on its own CUDA stream, so the slow thread's decoding and the fast thread's frames
overlap on the GPU.

The same classes run on the CPU without graphs (tests check them against ``DynamicLMState``).
"""
from __future__ import annotations

import logging

import torch

from .lm_state import LMState, renumbering, rope_rotation
from .static_decoder import POSITION_SENTINEL, FusedDecoder

log = logging.getLogger(__name__)
GRAPH_WARMUP_RUNS = 2  # eager runs on a side stream before capture (cuBLAS handles, workspaces)


def capture_graph(body, capture_stream: torch.cuda.Stream, pool, after=None) -> tuple[torch.cuda.CUDAGraph, object]:
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


class StaticLMState(LMState):
    """One context in preallocated buffers. ``fork_into``: the state a fork of this one is copied into
    (the main state forks into the backend's one slow buffer; the slow state itself cannot fork)."""

    def __init__(self, model, fused: FusedDecoder, capacity: int, use_graphs: bool, frame_length: int | None = None,
                 fork_into: "StaticLMState | None" = None, buffers: tuple | None = None):
        """``buffers``: (keys, values, slot_pos, fill, next_pos) to work in (views of a pool shared by several
        states, ``batched_step.KVPool``), shaped as allocated below; None: its own."""
        self.model, self.fused, self.capacity, self.fork_into = model, fused, capacity, fork_into
        device, dtype = model.device, model.dtype
        shape = (len(fused.layers), fused.num_kv_heads, capacity, fused.head_dim)
        tracks = fused.num_tracks  # the full layers, then each token-dropping layer
        if buffers is not None:
            self.keys, self.values, self.slot_pos, self.fill_t, self.next_pos_t = buffers
        else:
            self.keys = torch.zeros(shape, dtype=dtype, device=device)  # [layers, H_kv, capacity, D]
            self.values = torch.zeros(shape, dtype=dtype, device=device)
            self.slot_pos = torch.full((tracks, capacity), POSITION_SENTINEL, dtype=torch.long, device=device)
            self.fill_t = torch.zeros(tracks, dtype=torch.long, device=device)
            self.next_pos_t = torch.zeros((), dtype=torch.long, device=device)
        self.fills = [0] * tracks  # host copy of fill_t
        self.next_pos = 0
        self._used_tracks = [t for t in range(tracks) if fused.track_layers(t)]
        self._plans: dict[tuple[bool, ...], object] = {}
        self.use_graphs = use_graphs and device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.capture_stream = torch.cuda.Stream(device) if self.use_graphs else None
        self.frame_length = frame_length  # the one embeds length with a graph (a decided frame)
        self._graphs: dict[str, tuple] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.use_graphs else None
        self._frame_ids: dict[tuple, tuple] = {}  # a frame's ids -> (device ids, placeholders as 0; their rows)
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
        return max(self.fills[t] for t in self._used_tracks)

    @property
    def fill(self) -> int:
        """Slots in use (the full layers'; every track holds at most this many)."""
        return max(self.fills)

    def nbytes(self) -> int:
        return 2 * self.keys.numel() * self.keys.element_size() + self.slot_pos.numel() * 8

    # Steps.
    def _run(self, x: torch.Tensor, plan=None, fast: bool = False) -> torch.Tensor:
        return self.fused.forward(x, self.keys, self.values, self.slot_pos, self.fill_t, self.next_pos_t, plan, fast=fast)

    def _plan(self, visual: tuple[bool, ...]):
        """The token-dropping plan of a feed with this visual mask (its device tensors made once)."""
        if visual not in self._plans:
            self._plans[visual] = self.fused.plan(list(visual), self.keys.device)
        return self._plans[visual]

    def _graph(self, key, length: int, body):
        if key not in self._graphs:
            fills, pos = list(self.fills), self.next_pos

            def undo():
                self.fill_t.copy_(torch.tensor(fills))
                self.next_pos_t.fill_(pos)
                for track, fill in enumerate(fills):
                    self.slot_pos[track, fill:fill + length] = POSITION_SENTINEL

            try:
                self._graphs[key] = capture_graph(body, self.capture_stream, self._pool, after=undo)
            except Exception as err:  # torch.compile fails on the first (warm-up) run: fall back to the plain ops
                if not self.fused.compiled:
                    raise
                torch.cuda.synchronize(self.keys.device)
                undo()
                self.fused.use_eager(f"torch.compile failed: {type(err).__name__}: {err}")
                log.warning("static backend: %s; running without it", self.fused.compile_fallback)
                self._graphs[key] = capture_graph(body, self.capture_stream, self._pool, after=undo)
        return self._graphs[key]

    @torch.no_grad()
    def feed(self, ids, embeds=None, visual=None, readout=None):
        ids = list(ids)
        if self.fill + len(ids) > self.capacity:
            raise RuntimeError(f"static KV buffer full: {self.fill} + {len(ids)} tokens > capacity {self.capacity}")
        placeholder = self.model.token_ids.placeholder
        marks = tuple(i == placeholder for i in ids) if visual is None else tuple(bool(v) for v in list(visual))
        if len(marks) != len(ids):
            raise ValueError(f"visual mask of {len(marks)} for {len(ids)} tokens")
        plan = self._plan(marks)  # host-side: which tokens are visual is known before the step
        read = (lambda logits: logits) if readout is None else readout
        if self.stream is None:
            return read(self._feed(ids, embeds, marks, plan))
        self.stream.wait_stream(torch.cuda.current_stream())  # embeds were made on the caller's stream
        with torch.cuda.stream(self.stream):
            out = read(self._feed(ids, embeds, marks, plan))  # the readout's kernels queue behind the step's
        self.stream.synchronize()  # the caller reads the decision / token right away
        return out

    def _frame_input(self, ids: list[int], embeds: torch.Tensor) -> torch.Tensor:
        """``model.joint_embed(ids, embeds)[0][0]`` (into ``_frame_in`` where graphs run) with no host sync: the ids'
        device copy (placeholders as 0) and their placeholder rows are made once per ids (a decided frame's are
        always the same), then the token embeddings and the frame's rows go in (three kernels instead of a dozen
        and two syncs)."""
        key = tuple(ids)
        if key not in self._frame_ids:
            placeholder = self.model.token_ids.placeholder
            ids_t = torch.tensor([0 if i == placeholder else i for i in ids], dtype=torch.long, device=self.keys.device)
            rows = torch.tensor([k for k, i in enumerate(ids) if i == placeholder], dtype=torch.long,
                                device=self.keys.device)
            self._frame_ids = {key: (ids_t, rows)}  # one entry: the decided frame's ids
        ids_t, rows = self._frame_ids[key]
        frame = embeds.reshape(-1, embeds.shape[-1])  # [n, d]
        if frame.shape[0] != rows.numel():
            raise ValueError(f"{rows.numel()} placeholder tokens but {frame.shape[0]} frame token embeddings")
        x = self.model.llm.get_input_embeddings()(ids_t)  # [L, d]
        if self.use_graphs:
            x = self._frame_in.copy_(x)
        return x.index_copy_(0, rows, frame.to(x.device, x.dtype))

    def _token_graph(self):
        embed_tokens = self.model.llm.get_input_embeddings()
        return self._graph("token", 1, lambda: self._run(embed_tokens(self._token_in), fast=True))

    def _frame_graph(self, marks: tuple[bool, ...]):
        plan = self._plan(marks)
        return self._graph(("frame", marks), len(marks), lambda: self._run(self._frame_in, plan, fast=True))

    @torch.no_grad()
    def warm_up(self) -> None:
        """Capture (and compile) the one-token and decided-frame graphs now, before the stream starts, on the
        thread that builds the engine: no capture or compilation later stalls a frame or races another thread."""
        if not self.use_graphs:
            return
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            self._token_graph()
            if self.frame_length:
                self._frame_graph(tuple(i == self.model.token_ids.placeholder
                                        for i in self.model.formatter.frame_ids(after_frame=True)))
        self.stream.synchronize()

    def _feed(self, ids: list[int], embeds, marks: tuple[bool, ...], plan) -> torch.Tensor:
        if self.use_graphs and embeds is None and len(ids) == 1:
            self._token_in.fill_(ids[0])
            graph, out = self._token_graph()
            graph.replay()
        elif len(ids) == self.frame_length and embeds is not None:  # a decided frame
            x = self._frame_input(ids, embeds)  # [L, d]: the frame graph's input buffer where graphs run
            if self.use_graphs:
                graph, out = self._frame_graph(marks)
                graph.replay()
            else:
                out = self._run(x, plan)
        else:
            x, _ = self.model.joint_embed(torch.as_tensor(ids, dtype=torch.long)[None],
                                          None if embeds is None else embeds.reshape(1, -1, embeds.shape[-1]))
            if self.use_graphs and len(ids) == self.frame_length:
                self._frame_in.copy_(x[0])
                graph, out = self._frame_graph(marks)
                graph.replay()
            else:
                out = self._run(x[0], plan)
        kept = len(ids) if plan is None else plan.kept
        self.fills = [fill + (kept if routed else len(ids)) for fill, routed in zip(self.fills, self.fused.track_routed)]
        self.next_pos += len(ids)
        return out[-1]

    # Fork, reset, eviction.
    def fork(self) -> "StaticLMState":
        """The fork for the slow thinker: this context copied into the preallocated slow buffer."""
        if self.fork_into is None:
            raise RuntimeError("this static state has no buffer to fork into (only the main context forks)")
        return self.fork_into.load_from(self)

    @torch.no_grad()
    def load_from(self, other: "StaticLMState") -> "StaticLMState":
        """Become a copy of ``other``'s context."""
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
            self.slot_pos[:, :n].copy_(other.slot_pos[:, :n])
            self.fill_t.copy_(other.fill_t)
            self.next_pos_t.fill_(other.next_pos)
        if stream is not None:
            stream.synchronize()
        self.fills, self.next_pos, self.in_use = list(other.fills), other.next_pos, True
        return self

    def reset(self) -> "StaticLMState":
        """The slow thinker takes this (free) buffer, emptied."""
        if self.in_use:
            raise RuntimeError("the slow thinker's buffer is in use")
        self.clear()
        self.in_use = True
        return self

    def clear(self) -> None:
        """Empty the context (same buffers and graphs): no slot holds a position any more."""
        self.slot_pos.fill_(POSITION_SENTINEL)
        self.fill_t.zero_()
        self.next_pos_t.zero_()
        self.fills = [0] * len(self.fills)
        self.next_pos = 0

    def release(self) -> None:
        self.in_use = False

    @torch.no_grad()
    def evict(self, keep: torch.Tensor, reindex: bool) -> None:
        keep = keep.to(self.slot_pos.device)
        if reindex:
            if self._rotate is None:
                self._rotate = rope_rotation(self.model.llm.get_decoder().rotary_emb)
            mapping, next_pos = renumbering(keep)
        for track, n_before in enumerate(self.fills):
            held = self.slot_pos[track, :n_before]  # positions, increasing along the slots
            idx = keep[held].nonzero().squeeze(-1)
            n = int(idx.numel())
            new_pos = held[idx]
            moved = mapping[new_pos] if reindex else new_pos
            delta = (moved - new_pos)[None]  # [1, n]
            for layer in self.fused.track_layers(track):  # one layer at a time: bounded temporary memory
                k = self.keys[layer, :, idx]
                self.keys[layer, :, :n] = self._rotate(k[None], delta)[0] if reindex else k
                self.values[layer, :, :n] = self.values[layer, :, idx]
            self.slot_pos[track, :n] = moved
            self.slot_pos[track, n:n_before] = POSITION_SENTINEL
            self.fills[track] = n
        self.fill_t.copy_(torch.tensor(self.fills))
        if reindex:
            self.next_pos = next_pos
            self.next_pos_t.fill_(next_pos)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
