"""A Llama-family decoder pass over preallocated KV buffers (the static backend's math).

Same function as ``model.step`` (token dropping included), written for fixed shapes so a step can
be captured in a CUDA graph, and with few kernels (a one-token step is bound by launch gaps
between small kernels as much as by reading the weights):
- K/V live in buffers ``[layers, H_kv, capacity, D]``; new tokens are written at slots
  ``fill .. fill+M-1`` with ``index_copy_``; each slot remembers its position (``slot_pos``, a
  sentinel past any position when empty), so the additive mask ``slot_pos <= query position`` over
  the whole buffer is causal inside the step and hides empty slots;
- a *track* is a group of layers holding the same tokens: track 0 the full layers, then one per
  token-dropping layer (each keeps its own subset). Each track has its own ``slot_pos`` row and
  ``fill``; its mask is built once per step (the full track) or once per layer (dropping tracks);
- token dropping with fixed shapes (``routing.py``: a ``DropPlan`` per feed, the kept indices on the
  device without a host sync); kept tokens run the layer, dropped ones pass through (the
  straight-through term of training is exactly zero in value, so it is left out). Where attention
  runs Triton (and ``routing`` is not ``'torch'``), a feed of at most ``token_routing.MAX_ROWS`` rows
  routes in three launches (``kernels/token_routing.py``): the router's logits (and the layer's input
  norm where it is not computed yet), then top-k, gathers and slot writes, then the scatter back with
  the layer's last add and the next norm;
- ``fill`` and ``next_pos`` live on the device and are advanced by the step itself, so a graph
  replay needs no host input besides the new embeddings;
- q/k/v and gate/up run as one matrix product each (their weights are concatenated once, and the
  model's own ``q_proj`` etc. become views into the concatenation: no extra memory); RoPE rotates q
  and k together; grouped-query attention folds the query heads that share a K/V head into the
  query length (HF's ``repeat_kv`` pairing, without copying K/V);
- ``fold_norms``: where the few-rows kernel runs a product (``quantization.folds``), the residual add after the
  o and down products happens in that product's last step, which also hands over the stream's per-tile sums of
  squares, and where the consuming product (q/k/v, gate/up, the output head) runs the kernel's one-row path it
  applies the next RMSNorm as it loads its input: no add + norm kernel between the products of a generated token.
  With weight-only FP8 the norms' weights are multiplied into the q/k/v and gate/up codes when they are made
  (``quantization.quantize_layers``): the consumer then scales its output rows by the stream's ``rstd``, in the
  tensor-core path too, so a decided frame's products fold the adds and norms as well. Elsewhere (a bf16 frame's
  rows, cuBLAS picks, CPU, long feeds, the routing's inputs) the norm runs as its own kernel;
- the elementwise pieces (RMSNorm, residual add + RMSNorm, RoPE, SiLU-gate, masked softmax) are
  plain functions with HF's arithmetic (``decoder_ops.py``); ``compile=True`` fuses each into one kernel with
  ``torch.compile`` (for the graphed steps only: fixed shapes, compiled once). Where Triton cannot
  run (no GPU, no Triton, a compiler error at the first step) the plain functions run instead and
  ``compile_fallback`` says why;
- attention is either ``sdpa`` (PyTorch's fused kernel with the mask) or ``split``: scores by one
  batched matrix product over the whole buffer, a float32 masked softmax (HF's eager arithmetic),
  then the value product split into ``SPLIT_CHUNK``-slot chunks summed in float32. With a few
  queries and thousands of keys the fused kernel runs on a handful of SMs; the split form keeps
  every SM busy (split-K over the keys); or ``triton`` (``kernels/decode_attention.py``): split-K over
  key blocks in one Triton kernel with an online softmax and a small reduction, the mask computed in
  the kernel from ``slot_pos`` and each row reading only up to its fill (no mask tensor, no read of
  the empty capacity). Feeds of more than ``MAX_ROWS`` stacked query rows (prompts) take the split
  path. Where it cannot run (no CUDA GPU, no Triton, a GPU before bf16 support) ``split`` runs and
  ``attention_fallback`` says why.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import ATTENTION_KINDS, LINEAR_KERNELS
from .decoder_ops import ElementwiseOps, compile_problem, fuse_rows
from .quantization import (StreamedWeight, few_rows_problem, folds, fused_linear, gated, linear, norm_in_weight,
                           quantize_fp8, quantize_layers, stream_layers, tune_layers)
from .routing import DropPlan, drop_plan, kept_indices

ROUTING_KINDS = ("auto", "torch")  # auto: the Triton routing kernels where attention runs Triton
POSITION_SENTINEL = 1 << 40  # an empty slot's position: after every query, so always masked
SPLIT_CHUNK = 256  # key slots per chunk of the split value product (buffers are sized in multiples)
TRITON_MIN_CAPABILITY = (8, 0)  # bf16 tensor-core products (A100 and later)
LOG = logging.getLogger(__name__)
TUNE_ROWS = 11  # the few-rows kernel's tiles are timed at a decided frame's rows (interval + 10 tokens) and at 1


@dataclass
class FusedLayer:
    ln1: torch.Tensor  # input_layernorm weight
    ln2: torch.Tensor  # post_attention_layernorm weight
    eps: float
    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor | None
    o_weight: torch.Tensor
    o_bias: torch.Tensor | None
    gate_up_weight: torch.Tensor
    gate_up_bias: torch.Tensor | None
    down_weight: torch.Tensor
    down_bias: torch.Tensor | None
    track: int  # 0: a full layer; else its own dropping track
    router: nn.Module | None  # the layer's Token Dropping Router


@dataclass
class TrackView:
    """Where one step writes in one track and what its queries may see."""

    slots: torch.Tensor  # [K] slots written
    mask: torch.Tensor | None  # [g*K, cap] additive; None where the kernel masks from the positions
    cos: torch.Tensor  # [1, K, D]
    sin: torch.Tensor
    track: int
    pos: torch.Tensor  # [K] the queries' positions
    slot_pos: torch.Tensor  # [tracks, cap]
    fill: torch.Tensor  # [tracks]: slots filled before this step


def gate_of(gate_up: torch.Tensor, fl: FusedLayer, ops) -> torch.Tensor:
    """The MLP's gated activations from the gate/up product's output: computed here, or already by the product
    (``quantization.gated``: FP8 codes of (gate, up) pairs)."""
    return gate_up if gated(fl.gate_up_weight) else ops.gate(gate_up)


def attention_problem(device: torch.device) -> str | None:
    """None if the Triton decode-attention kernel can run on ``device``, else why not."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed"
    if device.type != "cuda":
        return f"no CUDA device (the model is on {device.type})"
    if torch.cuda.get_device_capability(device) < TRITON_MIN_CAPABILITY:
        return f"{torch.cuda.get_device_name(device)} is older than compute capability 8.0 (no bf16 tensor cores)"
    return None


class FusedDecoder:
    """The backbone's layers with fused projections; shared by every static state of one model."""

    def __init__(self, llm, compile: bool = False, attention: str = "sdpa", dropping=None, weights: str = "native",
                 routing: str = "auto", linear_kernel: str = "auto", fold_norms: bool = True, fp8_head: bool = True):
        """``dropping``: the model's ``TokenDropping`` (or None). ``weights='fp8'``: the layers' projections as
        weight-only FP8 (``quantization.py``; the model's own weights are left as they are). ``routing='torch'``:
        the dropping layers route in torch even where the Triton routing kernels could run. ``linear_kernel='auto'``:
        the bf16 projections and the output head run with the faster of cuBLAS and the few-rows kernel per shape
        (timed here, ``quantization.tune_layers``) where that kernel can run; ``'torch'``: ``F.linear``.
        ``fold_norms``: the residual adds and RMSNorms inside the kernel's products where it runs them. ``fp8_head``
        (with ``weights='fp8'``): the output head as FP8 codes too (with ``fold_norms``, of ``W diag(g)``, ``g`` the
        final norm's weight)."""
        if linear_kernel not in LINEAR_KERNELS:
            raise ValueError(f"linear_kernel {linear_kernel!r} is not one of {LINEAR_KERNELS}")
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention {attention!r} is not one of {ATTENTION_KINDS}")
        if routing not in ROUTING_KINDS:
            raise ValueError(f"routing {routing!r} is not one of {ROUTING_KINDS}")
        self.attention, self.attention_fallback = attention, None
        if attention == "triton":
            self.attention_fallback = attention_problem(llm.device)
        if self.attention_fallback is not None:
            self.attention = "split"
            (LOG.warning if llm.device.type == "cuda" else LOG.info)(
                "attention 'triton' is not possible here (%s): 'split' runs", self.attention_fallback)
        if self.attention == "triton":
            from .kernels.decode_attention import MAX_ROWS, decode_attention
            from .kernels.rope_store import rope_and_store as rope_kernel

            self.kernel, self.kernel_rows, self.rope_kernel = decode_attention, MAX_ROWS, rope_kernel
            self.single_row = torch.zeros(1, dtype=torch.long, device=llm.device)  # a lone state: a pool of one row
        self.route_kernels = None  # kernels/token_routing.py where it runs
        if self.attention == "triton" and routing == "auto" and dropping is not None:
            from .kernels import token_routing

            self.route_kernels = token_routing
        self.llm = llm
        self.decoder = llm.get_decoder()
        cfg = llm.config
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = getattr(cfg, "num_key_value_heads", None) or self.num_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.num_heads
        self.groups = self.num_heads // self.num_kv_heads
        self.dropping = dropping
        self.layers: list[FusedLayer] = []
        self.track_routed = [False]  # track 0: the full layers
        for idx, layer in enumerate(self.decoder.layers):
            router = dropping.router(idx) if dropping is not None else None
            track = 0
            if router is not None:
                track = len(self.track_routed)
                self.track_routed.append(True)
            attn, mlp = layer.self_attn, layer.mlp
            qkv_w, qkv_b = fuse_rows([attn.q_proj, attn.k_proj, attn.v_proj])
            gu_w, gu_b = fuse_rows([mlp.gate_proj, mlp.up_proj])
            self.layers.append(FusedLayer(
                layer.input_layernorm.weight, layer.post_attention_layernorm.weight,
                layer.input_layernorm.variance_epsilon, qkv_w, qkv_b, attn.o_proj.weight, attn.o_proj.bias,
                gu_w, gu_b, mlp.down_proj.weight, mlp.down_proj.bias, track, router))
        self.weights, self.fold_norms, self.fp8_head = weights, fold_norms, fp8_head
        silu = getattr(llm.config, "hidden_act", "silu") == "silu"
        self.fp8_bytes = quantize_layers(self.layers, norms_in_codes=fold_norms, gate_pairs_in_codes=fold_norms and silu
                                         ) if weights == "fp8" else 0
        head = llm.get_output_embeddings()
        self.head_weight, self.head_bias = head.weight, head.bias  # [V, d], the logits of the last position
        self.final_norm = (self.decoder.norm.weight, self.decoder.norm.variance_epsilon)
        if weights == "fp8" and fp8_head:
            self.head_weight = quantize_fp8(head.weight, self.final_norm[0] if fold_norms else None)
            self.fp8_bytes += self.head_weight.nbytes()
            if fold_norms:
                self.final_norm = (torch.ones_like(self.final_norm[0]), self.final_norm[1])
        self.linear_kernel = linear_kernel
        self.linear_fallback = few_rows_problem(llm.device, llm.dtype) if linear_kernel == "auto" else None
        streamed = linear_kernel == "auto" and self.linear_fallback is None
        if streamed:
            stream_layers(self.layers)
            if isinstance(self.head_weight, torch.Tensor):
                self.head_weight = StreamedWeight(self.head_weight)
        tunable = llm.device.type == "cuda" and (weights == "fp8" or streamed)
        self.linear_tuning = tune_layers(self.layers, TUNE_ROWS, llm.dtype, self.head_weight) if tunable else []
        self.scaling = self.decoder.layers[0].self_attn.scaling
        act = None if getattr(cfg, "hidden_act", "silu") == "silu" else self.decoder.layers[0].mlp.act_fn
        self._act = act
        self.eager_ops = ElementwiseOps(act, compiled=False)
        self.compile_fallback = compile_problem() if compile else None
        self.compiled = compile and self.compile_fallback is None
        self.fast_ops = ElementwiseOps(act, compiled=True) if self.compiled else self.eager_ops

    def own_compiled_ops(self) -> ElementwiseOps:
        """Compiled elementwise ops with compile caches of their own (a batched step's bucket: its shapes do not
        count against the single path's limit); the plain ones where this decoder does not compile."""
        return ElementwiseOps(self._act, compiled=True, own_code=True) if self.compiled else self.eager_ops

    def use_eager(self, reason: str) -> None:
        """Give up ``torch.compile`` (it failed here): the graphed steps run the plain functions."""
        self.compiled, self.compile_fallback, self.fast_ops = False, reason, self.eager_ops

    @property
    def num_tracks(self) -> int:
        return len(self.track_routed)

    def track_layers(self, track: int) -> list[int]:
        return [idx for idx, fl in enumerate(self.layers) if fl.track == track]

    def plan(self, visual: list[bool], device: torch.device) -> DropPlan | None:
        if self.dropping is None:
            return None
        return drop_plan(visual, self.dropping.tokens_per_frame, self.dropping.keep, self.track_routed, device)

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, slot_pos: torch.Tensor,
                fill: torch.Tensor, next_pos: torch.Tensor, plan: DropPlan | None = None,
                fast: bool = False) -> torch.Tensor:
        """``x [M, d]`` new embeddings -> last position's logits ``[1, V]``; writes K/V, advances fill/next_pos.

        ``slot_pos [tracks, cap]``, ``fill [tracks]``; ``plan``: token dropping for this feed (None: all kept).
        ``fast``: use the compiled elementwise kernels (fixed-shape graphed steps)."""
        ops = self.fast_ops if fast else self.eager_ops
        m = x.shape[0]
        steps = torch.arange(m, device=x.device)
        pos = next_pos + steps  # [M]
        cos, sin = self.decoder.rotary_emb(x[None], position_ids=pos[None])  # [1, M, D]
        whole: dict[int, TrackView] = {}  # track -> view, for layers that run on every token
        kernels = self.route_kernels if self.route_kernels and m <= self.route_kernels.MAX_ROWS else None  # routing
        first = self.layers[0]
        h = ops.rms_norm(x, first.ln1, first.eps)
        residual = x  # the stream entering the layer; h is its input norm
        sums = None  # [T, M] the stream's sums of squares where its norm is left to the next product (h is None)
        for idx, fl in enumerate(self.layers):
            nxt = self.layers[idx + 1] if idx + 1 < len(self.layers) else None
            weight, eps = (nxt.ln1, nxt.eps) if nxt is not None else self.final_norm
            if fl.router is not None and plan is not None:
                if kernels is not None:  # routing launches around the layer (the input norm with the logits)
                    pending = None if sums is None else (fl.ln1, fl.eps)
                    _, dest_of, h_k, res_k, pos_k, cos_k, sin_k, slots = kernels.route(
                        residual, h if pending is None else None, pos, cos, sin, plan.frame_of, self.dropping.keep,
                        plan.kept, fl.router, slot_pos, fill, fl.track, layer_norm=pending)
                    sums = None
                    view = self._view(fl.track, pos_k, cos_k, sin_k, slot_pos, fill, x.dtype, slots)
                    res_k, mlp = self._layer(fl, h_k, res_k, keys[idx], values[idx], view, ops)
                    norm_rows = m if nxt is not None else 1  # the last layer: only the last position matters
                    residual, h = kernels.merge(residual, res_k, mlp, dest_of, weight, eps, norm_rows)
                    continue
                if sums is not None:  # torch's routing reads the normalized rows
                    h, sums = ops.rms_norm(residual, fl.ln1, fl.eps), None
                sel = kept_indices(fl.router, residual[None], plan, self.dropping.keep)[0]  # [K] kept tokens, in order
                view = self._view(fl.track, pos[sel], cos[:, sel], sin[:, sel], slot_pos, fill, x.dtype)
                res_k, mlp = self._layer(fl, h[sel], residual[sel], keys[idx], values[idx], view, ops)
                residual = residual.index_copy(0, sel, res_k + mlp)  # dropped tokens pass the layer unchanged
                h = ops.rms_norm(residual if nxt is not None else residual[-1:], weight, eps)
                continue
            if fl.track not in whole:
                whole[fl.track] = self._view(fl.track, pos, cos, sin, slot_pos, fill, x.dtype)
            attn = self._attention(fl, *self._input(residual, sums, h, fl.ln1, fl.eps, fl.qkv_weight, ops),
                                   keys[idx], values[idx], whole[fl.track], ops)
            last = slice(-1, None) if nxt is None else slice(None)  # the last layer: only the last position matters
            residual, sums, h = self._add(attn, fl.o_weight, fl.o_bias, residual, fl.ln2, fl.eps, ops,
                                          fl.gate_up_weight, residual[last])
            gate_up = self._linear(*self._input(residual[last], None if sums is None else sums[:, last].contiguous(),
                                                None if h is None else h[last], fl.ln2, fl.eps, fl.gate_up_weight, ops),
                                   fl.gate_up_weight, fl.gate_up_bias)
            # a routed next layer: its routing launch computes its input norm
            routed_next = nxt is not None and nxt.router is not None and plan is not None and kernels is not None
            residual, sums, h = self._add(gate_of(gate_up, fl, ops), fl.down_weight, fl.down_bias, residual[last],
                                          weight, eps, ops,
                                          None if routed_next else (nxt.qkv_weight if nxt else self.head_weight))
        # [1, V]: the last position after the final norm
        logits = self._linear(*self._input(residual, sums, h, *self.final_norm, self.head_weight, ops), self.head_weight,
                              self.head_bias)
        fill.add_(m if plan is None else plan.counts)
        next_pos.add_(m)
        return logits

    def uses_kernel(self, queries: int) -> bool:
        """Whether a feed of ``queries`` tokens per K/V head runs the Triton kernel (else the split path)."""
        return self.attention == "triton" and self.groups * queries <= self.kernel_rows

    def _view(self, track, pos, cos, sin, slot_pos, fill, dtype, slots=None) -> TrackView:
        """Write ``pos [K]`` at the track's next slots (``slots``: already written there); the additive mask of
        those queries over its buffer."""
        row = slot_pos[track]
        if slots is None:
            slots = fill[track] + torch.arange(pos.shape[0], device=pos.device)
            row.index_copy_(0, slots, pos)
        if self.uses_kernel(pos.shape[0]):
            return TrackView(slots, None, cos, sin, track, pos, slot_pos, fill)
        allowed = (row[None, :] <= pos[:, None]).repeat(self.groups, 1)  # [g*K, cap]
        mask_dtype = dtype if self.attention == "sdpa" else torch.float32
        mask = torch.zeros(allowed.shape, dtype=mask_dtype, device=pos.device).masked_fill(~allowed, float("-inf"))
        return TrackView(slots, mask, cos, sin, track, pos, slot_pos, fill)

    def _input(self, residual, sums, h, norm_weight, eps, weight, ops):
        """What a product after an RMSNorm takes: ``(x, norm)`` with ``norm`` None (``x`` is the normalized rows) or
        ``(weight, sums, eps)`` (``x`` is the stream; the product normalizes it as it loads it). ``sums`` None: ``h``
        is the norm already computed; else the norm is pending and runs in the product where it folds, or here."""
        if sums is None:
            return h, None
        if folds(residual, weight, norm=True):  # a norm weight in the FP8 codes: only the rows' scale is left
            return residual, (None if norm_in_weight(weight) else norm_weight, sums, eps)
        return ops.rms_norm(residual, norm_weight, eps), None

    @staticmethod
    def _linear(x, norm, weight, bias):
        return linear(x, weight, bias) if norm is None else fused_linear(x, weight, bias, norm=norm)[0]

    def _add(self, x, weight, bias, residual, norm_weight, eps, ops, consumer, consumer_rows=None):
        """The stream after a sublayer, ``residual + x @ W.T`` -> ``(stream, sums, h)``: with the add folded into the
        product, its sums of squares and no ``h`` (the next norm is left to its consumer); else the add + norm
        kernel's ``h``. The add folds only where the norm after it folds too (else no kernel is saved): ``consumer``
        is the weight of the product after the norm (on ``consumer_rows`` of the stream, default all), or None for
        the routing kernels' launch, which computes the norm itself."""
        rows = residual if consumer_rows is None else consumer_rows
        next_folds = consumer is None or folds(rows, consumer, norm=True)
        if self.fold_norms and next_folds and folds(x, weight) and residual.is_contiguous():
            stream, sums = fused_linear(x, weight, bias, residual=residual)
            return stream, sums, None
        h, stream = ops.add_rms_norm(linear(x, weight, bias), residual, norm_weight, eps)
        return stream, None, h

    def _layer(self, fl: FusedLayer, h, residual, k_buf, v_buf, view: TrackView, ops):
        """One whole decoder layer on ``h = norm(residual)`` ``[K, d]`` -> ``(residual after attention, mlp)``
        ``[K, d]`` each: the layer's output stream is their sum."""
        attn = self._attention(fl, h, None, k_buf, v_buf, view, ops)
        residual, sums, h = self._add(attn, fl.o_weight, fl.o_bias, residual, fl.ln2, fl.eps, ops, fl.gate_up_weight)
        gate_up = self._linear(*self._input(residual, sums, h, fl.ln2, fl.eps, fl.gate_up_weight, ops),
                               fl.gate_up_weight, fl.gate_up_bias)
        return residual, linear(gate_of(gate_up, fl, ops), fl.down_weight, fl.down_bias)

    def _attention(self, fl: FusedLayer, h, norm, k_buf, v_buf, view: TrackView, ops) -> torch.Tensor:
        """``h [M, d]`` (with ``norm``: the stream, normalized by the q/k/v product) -> the attention's output before the
        o projection ``[M, Hq * D]``."""
        m, hd, hq, hkv = h.shape[0], self.head_dim, self.num_heads, self.num_kv_heads
        slots, mask, cos, sin = view.slots, view.mask, view.cos, view.sin
        qkv = self._linear(h, norm, fl.qkv_weight, fl.qkv_bias)  # [M, (Hq + 2 Hkv) * D]
        if self.attention == "triton":  # one launch: rotary, both KV writes; q [M, Hq, D]
            q = self.rope_kernel(qkv, cos, sin, k_buf, v_buf, slots, (hq, hkv, hd))
            if mask is None:  # the kernel, masking from the slot positions; out [M, Hq, D]
                out = self.kernel(q[None], k_buf[None], v_buf[None], view.slot_pos[None], view.fill[None],
                                  view.pos[None], self.single_row, view.track, self.scaling)[0]
                return out.view(m, hq * hd)
            q = q.transpose(0, 1)  # [Hq, M, D]: a long feed takes the split path
        else:
            q = ops.rope_and_store(qkv, cos, sin, k_buf, v_buf, slots, (hq, hkv, hd))  # [Hq, M, D]
        q = q.reshape(hkv, self.groups * m, hd)  # query heads of one K/V head, stacked along length
        if self.attention == "sdpa":
            out = F.scaled_dot_product_attention(q[None], k_buf[None], v_buf[None], attn_mask=mask[None, None],
                                                 scale=self.scaling)[0]
        else:
            out = self._split_attention(q, k_buf, v_buf, mask, ops)
        return out.view(hq, m, hd).transpose(0, 1).reshape(m, hq * hd)

    def _split_attention(self, q, k_buf, v_buf, mask, ops) -> torch.Tensor:
        """``q [Hkv, gM, D]`` over the whole buffer ``[Hkv, cap, D]`` -> ``[Hkv, gM, D]``."""
        hkv, rows, hd = q.shape
        cap = k_buf.shape[1]
        chunks = cap // SPLIT_CHUNK
        probs = ops.masked_softmax(torch.matmul(q, k_buf.transpose(1, 2)), mask, self.scaling)  # [Hkv, gM, cap]
        probs = probs.view(hkv, rows, chunks, SPLIT_CHUNK).transpose(1, 2)  # [Hkv, chunks, gM, C]
        partial = torch.matmul(probs, v_buf.view(hkv, chunks, SPLIT_CHUNK, hd))  # [Hkv, chunks, gM, D]
        return partial.sum(1, dtype=torch.float32).to(q.dtype)
