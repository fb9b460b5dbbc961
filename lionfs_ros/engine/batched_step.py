"""One LLM step for the decided frames of several streams at once (a ``StreamGroup``'s round).

The streams' main contexts live side by side in one ``KVPool`` (K/V ``[layers, S+1, H_kv, cap, D]``,
slot positions ``[S+1, tracks, cap]``, fills ``[S+1, tracks]``, next positions ``[S+1]``): row ``r``
is stream ``r``'s ``StaticLMState`` (a view: text pieces, forks, eviction and the KV budget work on it
as on a state of its own), row ``S`` is scratch for padding. Each stream keeps its own length and
positions; a step writes each row's new K/V at that row's fill, with that row's positions, and
masks each row's queries by that row's slot positions, so a row decides exactly as it would alone.

A round's batchable frames are the fixed piece "interval + n placeholders" (a plain frame right
after a frame: ``StreamContext.plain_frame_ids``); the others (a stream's first frame, the first
after an answer) feed alone on their state. The batch is padded to a bucket (1, 2, 4, 8, 16; 3 due
frames run as 4, the 4th row on scratch). Attention reads each row's slots up to a *span*: the longest
row's fill plus the frame, in whole ``SPAN_STEP`` chunks (a short context does not pay for the whole
budget's buffer). On CUDA each (bucket, span) is one CUDA graph, all captured when the group is built,
with the elementwise ops the single stream's graphs run (``compile=True``: a compiled set per bucket, its
shapes compiled at build; where compiling fails, the plain ones with ``compile_fallback`` saying why, as on
the single path).
The same code runs eagerly on the CPU (the tests check it against each stream alone).
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from .backends import CAPACITY_ALIGN, StaticBackend
from .bounds import portable_prompt_bound, token_bounds
from .config import EngineConfig
from .cuda_graphs import StaticLMState, capture_graph
from .quantization import linear
from .routing import kept_indices
from .static_decoder import POSITION_SENTINEL, FusedDecoder, gate_of

BUCKETS = (1, 2, 4, 8, 16)  # batch sizes with a graph; a round pads up to the next one
SPAN_STEP = CAPACITY_ALIGN  # attention spans (slots read per row) come in whole chunks of this many
LOG = logging.getLogger(__name__)


def bucket_for(n: int) -> int:
    return next(b for b in BUCKETS if b >= n)


def _align(n: int) -> int:
    return -(-n // CAPACITY_ALIGN) * CAPACITY_ALIGN


class KVPool:
    """The main contexts of ``rows`` streams in one set of buffers, plus one scratch row (padding)."""

    def __init__(self, fused: FusedDecoder, rows: int, capacity: int, device: torch.device, dtype: torch.dtype):
        self.rows, self.capacity, self.scratch = rows, capacity, rows
        shape = (len(fused.layers), rows + 1, fused.num_kv_heads, capacity, fused.head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)  # [layers, S+1, H_kv, cap, D]
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.slot_pos = torch.full((rows + 1, fused.num_tracks, capacity), POSITION_SENTINEL, dtype=torch.long,
                                   device=device)  # [S+1, tracks, cap]
        self.fill = torch.zeros(rows + 1, fused.num_tracks, dtype=torch.long, device=device)  # [S+1, tracks]
        self.next_pos = torch.zeros(rows + 1, dtype=torch.long, device=device)  # [S+1]

    def row(self, r: int) -> tuple:
        """Row ``r``'s buffers as ``StaticLMState(buffers=...)`` takes them."""
        return self.keys[:, r], self.values[:, r], self.slot_pos[r], self.fill[r], self.next_pos[r]

    def clear_scratch(self) -> None:
        # fill_ on views (an indexed assignment of a Python number copies from the host: not capturable)
        self.slot_pos[self.scratch].fill_(POSITION_SENTINEL)
        self.fill[self.scratch].zero_()
        self.next_pos[self.scratch].zero_()


class PooledBackend(StaticBackend):
    """A stream's static backend whose main state is a row of the group's ``KVPool`` (its slow state is its own)."""

    name = "static-pooled"

    def __init__(self, model, cfg: EngineConfig, fused: FusedDecoder, pool: KVPool, row: int, use_graphs: bool):
        self._share(model, cfg, use_graphs)
        self.fused, self.row = fused, row
        bounds = token_bounds(model, cfg)
        if _align(cfg.kv_budget_tokens + bounds.largest_feed) > pool.capacity:
            raise ValueError(f"stream needs {cfg.kv_budget_tokens + bounds.largest_feed} KV slots; the pool has "
                             f"{pool.capacity}")
        slow_capacity = _align(max(pool.capacity + bounds.thinking + cfg.max_new_tokens,
                                   portable_prompt_bound(model, cfg) + cfg.max_new_tokens))
        self.slow = StaticLMState(model, fused, slow_capacity, use_graphs)
        # No frame graph of its own: its plain frames run in the group's batched graphs.
        self.main = StaticLMState(model, fused, pool.capacity, use_graphs, None, fork_into=self.slow,
                                  buffers=pool.row(row))
        self.main.warm_up()
        self.slow.warm_up()


def pool_capacity(model, cfgs: list[EngineConfig]) -> int:
    """KV slots per pool row: the largest stream's budget plus one feed, in whole chunks."""
    return max(_align(cfg.kv_budget_tokens + token_bounds(model, cfg).largest_feed) for cfg in cfgs)


class BatchedFrameStep:
    """The plain-frame LLM step of several pooled streams at once (graphs per bucket on CUDA)."""

    def __init__(self, model, fused: FusedDecoder, pool: KVPool, use_graphs: bool, streams: int):
        self.model, self.fused, self.pool = model, fused, pool
        device = model.device
        frame_ids = model.formatter.frame_ids(after_frame=True)
        placeholder = model.token_ids.placeholder
        # The piece's ids with placeholders as 0, and the placeholder positions, on the device once: a round's input
        # is their token embeddings with the frames' rows put in (no host sync, unlike joint_embed's count checks).
        self.ids = torch.tensor([0 if i == placeholder else i for i in frame_ids], dtype=torch.long, device=device)
        self.frame_rows = torch.tensor([k for k, i in enumerate(frame_ids) if i == placeholder], dtype=torch.long,
                                       device=device)  # [n]
        self.length = len(frame_ids)
        self.plan = fused.plan([i == model.token_ids.placeholder for i in frame_ids], device)
        self.counts = [self.length if self.plan is None or not routed else self.plan.kept
                       for routed in fused.track_routed]  # slots each track gains per step
        self.use_graphs = use_graphs and device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.buckets = [b for b in BUCKETS if b <= bucket_for(min(streams, BUCKETS[-1]))]
        self.spans = list(range(SPAN_STEP, pool.capacity + 1, SPAN_STEP))
        self._graphs: dict[tuple[int, int], tuple] = {}  # (bucket, span) -> (graph, logits)
        self._inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # bucket -> (x [B, M, d], rows [B])
        self._ops: dict[int, object] = {}  # bucket -> its compiled elementwise ops
        if self.use_graphs:
            self._capture_stream = torch.cuda.Stream(device)
            self._graph_pool = torch.cuda.graph_pool_handle()
            with torch.cuda.stream(self.stream):
                for b in self.buckets:
                    for span in self.spans:
                        self._graph(b, span)
            self.stream.synchronize()
        self.steps = 0

    def _graph(self, b: int, span: int):
        if (b, span) not in self._graphs:
            if b not in self._inputs:
                x = torch.zeros(b, self.length, self.model.hidden_size, dtype=self.model.dtype, device=self.model.device)
                self._inputs[b] = (x, torch.full((b,), self.pool.scratch, dtype=torch.long, device=self.model.device))
            x, rows = self._inputs[b]

            def body():
                self.pool.clear_scratch()
                return batched_forward(self.fused, self.pool, rows, x, self.plan, span, self._graph_ops(b))

            try:
                self._graphs[b, span] = capture_graph(body, self._capture_stream, self._graph_pool,
                                                      after=self.pool.clear_scratch)
            except Exception as err:  # torch.compile fails on a warm-up run: the plain ops, as the single path does
                if not self.fused.compiled:
                    raise
                torch.cuda.synchronize(self.model.device)
                self.pool.clear_scratch()
                self.fused.use_eager(f"torch.compile failed: {type(err).__name__}: {err}")
                LOG.warning("batched LLM step: %s; running without it", self.fused.compile_fallback)
                self._graphs[b, span] = capture_graph(body, self._capture_stream, self._graph_pool,
                                                      after=self.pool.clear_scratch)
        return self._graphs[b, span]

    def _graph_ops(self, b: int):
        """Bucket ``b``'s elementwise ops: compiled as in the single stream's graphs (a set per bucket, each with
        its few shapes, compiled at build), but the plain masked softmax (its shape changes with every span)."""
        if not self.fused.compiled:
            return self.fused.eager_ops
        if b not in self._ops:
            self._ops[b] = self.fused.own_compiled_ops()
            self._ops[b].masked_softmax = self.fused.eager_ops.masked_softmax
        return self._ops[b]

    def span_for(self, states: list[StaticLMState]) -> int:
        """Slots every row's attention reads: the longest row's fill plus this frame, in whole chunks."""
        need = max(state.fill for state in states) + self.length
        return min(-(-need // SPAN_STEP) * SPAN_STEP, self.pool.capacity)

    @torch.no_grad()
    def run(self, states: list[StaticLMState], rows: list[int], embeds: list[torch.Tensor],
            wait: bool = True) -> list[tuple[int, torch.Tensor]]:
        """Feed one plain frame ``embeds[i] [n, d]`` to each pooled state (row ``rows[i]``).

        Returns per state (the position its frame starts at, the logits at its last placeholder ``[V]``).
        ``wait=False``: returns once the step is queued on its stream; ``wait()`` before reading the logits."""
        for state in states:
            if state.fill + self.length > state.capacity:
                raise RuntimeError(f"static KV buffer full: {state.fill} + {self.length} tokens > {state.capacity}")
        out = []
        for lo in range(0, len(states), BUCKETS[-1]):
            out += self._run_bucket(states[lo:lo + BUCKETS[-1]], rows[lo:lo + BUCKETS[-1]], embeds[lo:lo + BUCKETS[-1]])
        self.steps += 1
        if wait:
            self.wait()  # the callers read their decisions right away
        return out

    def wait(self) -> None:
        """Until the queued steps are done (on the CPU they ran inline)."""
        if self.stream is not None:
            self.stream.synchronize()

    def _run_bucket(self, states, rows, embeds):
        n, b = len(states), bucket_for(len(states))
        frames = torch.stack([e.reshape(-1, e.shape[-1]) for e in embeds]).to(self.model.device, self.model.dtype)
        if frames.shape[1] != self.frame_rows.numel():  # frames [n, tokens, d]
            raise ValueError(f"{self.frame_rows.numel()} placeholder tokens but {frames.shape[1]} frame embeddings")
        x = self.model.llm.get_input_embeddings()(self.ids).expand(n, -1, -1).clone()  # [n, M, d]
        x.index_copy_(1, self.frame_rows, frames)
        rows_t = torch.tensor(rows + [self.pool.scratch] * (b - n), dtype=torch.long)  # [B]: padded with scratch
        starts = [state.next_position for state in states]
        span = self.span_for(states)
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream())  # embeds were made on the caller's stream
            x.record_stream(self.stream)  # not reused by the caller's stream before the step read it (wait=False)
        with torch.cuda.stream(self.stream) if self.stream is not None else _nullcontext():
            if self.use_graphs:
                graph, logits = self._graph(b, span)
                x_in, rows_in = self._inputs[b]
                x_in[:n].copy_(x)
                # from pinned memory without blocking: a pageable copy would wait for this stream, i.e. the towers
                rows_in.copy_(rows_t.pin_memory(), non_blocking=True)
                graph.replay()
            else:
                x = torch.cat([x, x.new_zeros(b - n, *x.shape[1:])])
                self.pool.clear_scratch()
                logits = batched_forward(self.fused, self.pool, rows_t.to(x.device), x, self.plan, span)
            logits = logits[:n].clone()
        for state in states:  # the host copies of what the step advances on the device
            state.fills = [fill + count for fill, count in zip(state.fills, self.counts)]
            state.next_pos += self.length
        return list(zip(starts, logits.unbind(0)))


@torch.no_grad()  # also while graphs are captured at build: autograd history on the pool would keep every run alive
def batched_forward(fused: FusedDecoder, pool: KVPool, rows: torch.Tensor, x: torch.Tensor, plan,
                    span: int, ops=None) -> torch.Tensor:
    """``x [B, M, d]`` new embeddings of pool rows ``rows [B]`` -> each row's last logits ``[B, V]``; attention
    reads the first ``span`` slots of each row (every row's fill plus ``M`` fits in them).

    ``FusedDecoder.forward``'s arithmetic, row by row in one batch; writes K/V and advances fill/next_pos.
    ``ops``: the elementwise functions (default the plain ones; the graphs pass the decoder's compiled ones)."""
    ops = ops or fused.eager_ops
    b, m, _ = x.shape
    pos = pool.next_pos[rows][:, None] + torch.arange(m, device=x.device)  # [B, M]
    cos, sin = fused.decoder.rotary_emb(x, position_ids=pos)  # [B, M, D]
    whole: dict[int, tuple] = {}  # track -> (slots, mask) of the layers that run on every token
    first = fused.layers[0]
    h = ops.rms_norm(x, first.ln1, first.eps)
    residual = x
    for idx, fl in enumerate(fused.layers):
        nxt = fused.layers[idx + 1] if idx + 1 < len(fused.layers) else None
        weight, eps = (nxt.ln1, nxt.eps) if nxt is not None else fused.final_norm
        if fl.router is not None and plan is not None:
            sel = kept_indices(fl.router, residual, plan, fused.dropping.keep)  # [B, K] kept tokens, in order

            def pick(t: torch.Tensor) -> torch.Tensor:
                return t.gather(1, sel[..., None].expand(-1, -1, t.shape[-1]))

            view = _view(fused, pool, rows, fl.track, pos.gather(1, sel), x.dtype, span)
            attn = _attention(fused, fl, idx, pool, rows, pick(h), view, pick(cos), pick(sin), ops)
            hk, res = ops.add_rms_norm(attn, pick(residual), fl.ln2, fl.eps)
            mlp = linear(gate_of(linear(hk, fl.gate_up_weight, fl.gate_up_bias), fl, ops), fl.down_weight, fl.down_bias)
            residual = residual.scatter(1, sel[..., None].expand(-1, -1, residual.shape[-1]), res + mlp)
            h = ops.rms_norm(residual if nxt is not None else residual[:, -1:], weight, eps)
            continue
        if fl.track not in whole:
            whole[fl.track] = _view(fused, pool, rows, fl.track, pos, x.dtype, span)
        attn = _attention(fused, fl, idx, pool, rows, h, whole[fl.track], cos, sin, ops)
        h, residual = ops.add_rms_norm(attn, residual, fl.ln2, fl.eps)
        last = slice(-1, None) if nxt is None else slice(None)  # the last layer: only the last position matters
        mlp = linear(gate_of(linear(h[:, last], fl.gate_up_weight, fl.gate_up_bias), fl, ops), fl.down_weight,
                     fl.down_bias)
        h, residual = ops.add_rms_norm(mlp, residual[:, last], weight, eps)
    logits = linear(h[:, -1], fused.head_weight, fused.head_bias)  # [B, V]
    counts = torch.full((fused.num_tracks,), m, dtype=torch.long, device=x.device) if plan is None else plan.counts
    pool.fill.index_add_(0, rows, counts.expand(b, -1))
    pool.next_pos.index_add_(0, rows, torch.full((b,), m, dtype=torch.long, device=x.device))
    return logits


def _view(fused: FusedDecoder, pool: KVPool, rows: torch.Tensor, track: int, pos: torch.Tensor, dtype, span: int):
    """Write ``pos [B, K]`` at each row's next slots of ``track``; returns (slots [B, K], additive mask
    [B, g*K, span] or None where the kernel masks from the slot positions, pos, track, span)."""
    k = pos.shape[1]
    slots = pool.fill[rows, track][:, None] + torch.arange(k, device=pos.device)  # [B, K]
    pool.slot_pos[rows[:, None], track, slots] = pos
    if fused.uses_kernel(k):
        return slots, None, pos, track, span
    allowed = pool.slot_pos[rows, track, :span][:, None, :] <= pos[:, :, None]  # [B, K, span]
    allowed = allowed.repeat(1, fused.groups, 1)  # [B, g*K, span]: query heads of one K/V head stacked along length
    mask_dtype = dtype if fused.attention == "sdpa" else torch.float32
    mask = torch.zeros(allowed.shape, dtype=mask_dtype, device=pos.device).masked_fill(~allowed, float("-inf"))
    return slots, mask, pos, track, span


def _attention(fused: FusedDecoder, fl, layer: int, pool: KVPool, rows, h, view, cos, sin, ops) -> torch.Tensor:
    """``h [B, K, d]`` -> attention output ``[B, K, d]``; each row attends over its own pool row."""
    b, m = h.shape[:2]
    hd, hq, hkv, g = fused.head_dim, fused.num_heads, fused.num_kv_heads, fused.groups
    slots, mask, pos, track, span = view
    qkv = linear(h, fl.qkv_weight, fl.qkv_bias)  # [B, K, (Hq + 2 Hkv) * D]
    qk = ops.rope(qkv[..., :(hq + hkv) * hd].view(b, m, hq + hkv, hd).transpose(1, 2), cos[:, None], sin[:, None])
    q, k = qk[:, :hq], qk[:, hq:]  # [B, Hq, K, D], [B, Hkv, K, D]
    v = qkv[..., (hq + hkv) * hd:].view(b, m, hkv, hd).transpose(1, 2)  # [B, Hkv, K, D]
    k_pool, v_pool = pool.keys[layer], pool.values[layer]  # [S+1, Hkv, cap, D]
    k_pool[rows[:, None], :, slots] = k.transpose(1, 2)  # [B, K, Hkv, D] at each row's slots
    v_pool[rows[:, None], :, slots] = v.transpose(1, 2)
    if mask is None:  # the kernel: reads each pool row in place, up to its fill (no gather copy)
        out = fused.kernel(q.transpose(1, 2), k_pool, v_pool, pool.slot_pos, pool.fill, pos, rows, track,
                           fused.scaling, span)  # [B, K, Hq, D]
        return linear(out.reshape(b, m, hq * hd), fl.o_weight, fl.o_bias)
    q = q.reshape(b, hkv, g * m, hd)
    if fused.attention == "sdpa":
        k_rows, v_rows = k_pool[rows, :, :span], v_pool[rows, :, :span]  # [B, Hkv, span, D]
        out = F.scaled_dot_product_attention(q, k_rows, v_rows, attn_mask=mask[:, None], scale=fused.scaling)
    else:  # split's arithmetic (float32 softmax), unchunked
        k_rows, v_rows = k_pool[rows, :, :span], v_pool[rows, :, :span]
        probs = ops.masked_softmax(torch.matmul(q, k_rows.transpose(-1, -2)), mask[:, None], fused.scaling)
        out = torch.matmul(probs, v_rows)  # [B, Hkv, gK, D]
    out = out.view(b, hq, m, hd).transpose(1, 2).reshape(b, m, hq * hd)
    return linear(out, fl.o_weight, fl.o_bias)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
