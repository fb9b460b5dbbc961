"""A vision tower's forward for the graph path: the HF module's weights, fewer and larger kernels.

The towers (SigLIP, CLIP: plain pre-norm ViTs) run one small kernel per HF op; at one frame (577 or
197 tokens) most of them are too small to fill the GPU, so the graph replays launch latency more than
arithmetic. Here, on the same weights (the HF layers view into the fused copies, as
``decoder_ops.fuse_rows`` does for the LLM):
- q/k/v are one matrix product per layer (``[M, C] @ [C, 3C]``), read by attention as strided views;
- attention reads q/k/v in place: on CUDA with a working Triton the engine's kernel (``kernels/tower_attention.py``:
  no memset node before it in the graph, unlike SDPA's cuDNN kernel), else PyTorch's fused SDPA (no mask, no
  dropout); either output is read back by the out projection without a copy;
- each residual add rides in the next product (``addmm_`` into the residual, bias added to the residual
  beforehand: out of place, ``addmm`` would first copy the residual into a new output), and with
  ``torch.compile`` that bias add is fused into the layer norm before it (one kernel: the norm and the
  shifted residual);
- the patch embedding is a matrix product over the frame's patches (the conv's weights, unfolded);
- on CUDA a tanh-approximated GELU (SigLIP's) rides in the first MLP product as cuBLASLt's epilogue
  (``torch._addmm_activation``; its CPU kernel computes the erf GELU instead, so the CPU runs the plain ops).
Same function as the HF forward up to bf16 rounding (products summed in another order, a residual
added before rounding instead of after): ``test_fused_tower.py`` checks it. Towers of other types, or
with adapter-wrapped layers, run the HF forward (``fused_tower_problem`` says why).
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from .decoder_ops import compile_problem, fuse_rows

log = logging.getLogger(__name__)
SIGLIP, CLIP = "siglip_vision_model", "clip_vision_model"
TANH_GELU = ("gelu_pytorch_tanh", "gelu_new")  # the GELU that cuBLASLt's epilogue computes
ATTENTION_KINDS = ("triton", "sdpa")


class TowerAttentionError(RuntimeError):
    """The Triton attention kernel failed (compiling or launching it): the tower can run SDPA instead."""


def _body(tower: nn.Module) -> nn.Module:
    """The module holding embeddings, encoder and norms (``vision_model`` in transformers 4; the model itself in 5)."""
    return getattr(tower, "vision_model", tower)


def fused_tower_problem(tower: nn.Module) -> str | None:
    """None if ``FusedTower`` can run this HF tower, else why not."""
    kind = tower.config.model_type
    if kind not in (SIGLIP, CLIP):
        return f"tower type {kind!r} is not one of {(SIGLIP, CLIP)}"
    vm = _body(tower)
    for layer in vm.encoder.layers:
        attn, mlp = layer.self_attn, layer.mlp
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj, mlp.fc1, mlp.fc2):
            if type(proj) is not nn.Linear:  # e.g. a LoRA wrapper
                return f"projection of type {type(proj).__name__} (not a plain Linear)"
    return None


def norm_shift(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
               shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [M, C]`` -> (``layer_norm(x)``, ``x + shift``): a sublayer's input and its residual with the output bias."""
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps), x + shift


def _compiled_over_rows(fn):
    """``torch.compile(fn)`` with its first argument's rows symbolic: one compilation serves every batch size
    (each tower's single-frame graph and its batched ones), well inside dynamo's recompile limit."""
    compiled = torch.compile(fn, fullgraph=True)

    def call(x: torch.Tensor, *args):
        torch._dynamo.mark_dynamic(x, 0)
        return compiled(x, *args)
    return call


def tower_attention_problem(device: torch.device) -> str | None:
    """None if the Triton tower-attention kernel can run on ``device``, else why not."""
    if device.type != "cuda":
        return f"no CUDA device (the tower is on {device.type})"
    return compile_problem()


class _Ops:
    def __init__(self, act, compiled: bool):
        wrap = _compiled_over_rows if compiled else (lambda fn: fn)
        self.norm_shift, self.act = wrap(norm_shift), wrap(act)


class FusedTower:
    """Normalized pixels ``[B, 3, S, S]`` -> the encoder's frame tokens ``[B, n, C]`` (``encoder.tokens_from``)."""

    def __init__(self, encoder, compile: bool = False, epilogue: bool = True, attention: str = "triton"):
        """``epilogue``: fuse a tanh GELU into the first MLP product where that is possible (CUDA). ``attention``:
        'triton' runs the Triton kernel where ``tower_attention_problem`` allows it (else SDPA, ``attention_fallback``
        says why), 'sdpa' PyTorch's SDPA; ``attention_run`` is the one that runs."""
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention {attention!r} is not one of {ATTENTION_KINDS}")
        problem = fused_tower_problem(encoder.tower)
        if problem is not None:
            raise ValueError(f"fused tower: {problem}")
        self.encoder = encoder
        tower = encoder.tower
        self.kind = tower.config.model_type
        vm = _body(tower)
        emb = vm.embeddings
        conv = emb.patch_embedding
        self.patch = conv.kernel_size[0]
        self.patch_weight = conv.weight.detach().flatten(1)  # [C, 3 * p * p]: a view of the conv's
        self.patch_bias = None if conv.bias is None else conv.bias.detach()
        self.positions = emb.position_embedding.weight.detach()  # [L, C]
        self.cls = emb.class_embedding.detach() if self.kind == CLIP else None  # [C]
        self.pre_norm = vm.pre_layrnorm if self.kind == CLIP else None
        self.post_norm = vm.post_layernorm
        self.head = vm.head if self.kind == SIGLIP and getattr(vm, "use_head", True) else None
        first = vm.encoder.layers[0].self_attn
        self.num_heads, self.head_dim, self.scale = first.num_heads, first.head_dim, first.scale
        self.layers = []
        for layer in vm.encoder.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv_w, qkv_b = fuse_rows([attn.q_proj, attn.k_proj, attn.v_proj])  # [3C, C], [3C]
            self.layers.append((layer.layer_norm1, qkv_w.detach(), qkv_b.detach(), attn.out_proj.weight.detach(),
                                attn.out_proj.bias.detach(), layer.layer_norm2, mlp.fc1.weight.detach(),
                                mlp.fc1.bias.detach(), mlp.fc2.weight.detach(), mlp.fc2.bias.detach()))
        act = vm.encoder.layers[0].mlp.activation_fn
        self.gelu_epilogue = epilogue and tower.config.hidden_act in TANH_GELU and self.patch_weight.is_cuda
        self.eager_ops = _Ops(act, compiled=False)
        self.compile_fallback = compile_problem() if compile else None
        self.compiled = compile and self.compile_fallback is None
        self.ops = _Ops(act, compiled=True) if self.compiled else self.eager_ops
        self.attention_run, self.attention_fallback = attention, None
        if attention == "triton":
            self.attention_fallback = tower_attention_problem(self.patch_weight.device)
        if self.attention_fallback is not None:
            self.attention_run = "sdpa"
            (log.warning if self.patch_weight.is_cuda else log.info)(
                "vision tower: attention 'triton' is not possible here (%s): SDPA runs", self.attention_fallback)
        if self.attention_run == "triton":
            from .kernels.tower_attention import tower_attention

            self.kernel = tower_attention

    def use_eager(self, reason: str) -> None:
        """Give up ``torch.compile`` (it failed here): the plain ops run."""
        self.compiled, self.compile_fallback, self.ops = False, reason, self.eager_ops

    def use_sdpa(self, reason: str) -> None:
        """Give up the Triton attention kernel (it failed here): SDPA runs."""
        self.attention_run, self.attention_fallback = "sdpa", reason

    def _attention(self, qkv: torch.Tensor) -> torch.Tensor:
        """``qkv [B, L, 3, H, D]`` (the product's view) -> ``softmax(q k^T * scale) v`` as ``[B*L, H*D]``."""
        b, length, _, heads, hd = qkv.shape
        if self.attention_run == "triton":
            try:
                return self.kernel(qkv, self.scale).view(b * length, heads * hd)  # [B, L, H, D] contiguous
            except Exception as err:
                raise TowerAttentionError(f"Triton attention failed: {type(err).__name__}: {err}") from err
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, L, D] each (strided views)
        att = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # [B, H, L, D]
        return att.transpose(1, 2).reshape(b * length, heads * hd)

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` float -> patch embeddings ``[B, L, C]`` with positions (and CLIP's class token)."""
        b, _, s, _ = pixels.shape
        p, g = self.patch, s // self.patch
        weight = self.patch_weight
        patches = torch.empty(b, g, g, 3, p, p, dtype=weight.dtype, device=weight.device)  # one copy: layout + cast
        patches.copy_(pixels.view(b, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5))
        patches = patches.view(b * g * g, -1)  # [B*N, 3*p*p]
        if self.patch_bias is None:
            x = (patches @ weight.t()).view(b, g * g, -1)  # [B, N, C]
        else:
            x = torch.addmm(self.patch_bias, patches, weight.t()).view(b, g * g, -1)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(b, 1, -1), x], dim=1)  # [B, 1 + N, C]
        x = x + self.positions[None]
        return x if self.pre_norm is None else self.pre_norm(x)

    def _layer(self, x: torch.Tensor, b: int, weights) -> torch.Tensor:
        """One pre-norm encoder layer on ``x [B*L, C]``."""
        ln1, qkv_w, qkv_b, o_w, o_b, ln2, fc1_w, fc1_b, fc2_w, fc2_b = weights
        m = x.shape[0]
        h, residual = self.ops.norm_shift(x, ln1.weight, ln1.bias, ln1.eps, o_b)
        qkv = torch.addmm(qkv_b, h, qkv_w.t()).view(b, m // b, 3, self.num_heads, self.head_dim)  # [B, L, 3, H, D]
        att = self._attention(qkv)  # [B*L, C]
        x = residual.addmm_(att, o_w.t())  # residual + o_b + att @ o_w^T, in place (no copy of the residual first)
        h, residual = self.ops.norm_shift(x, ln2.weight, ln2.bias, ln2.eps, fc2_b)
        if self.gelu_epilogue:
            hidden = torch._addmm_activation(fc1_b, h, fc1_w.t(), use_gelu=True)  # [B*L, 4C]
        else:
            hidden = self.ops.act(torch.addmm(fc1_b, h, fc1_w.t()))
        return residual.addmm_(hidden, fc2_w.t())

    def hidden(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` -> the encoder's output ``[B, L, C]`` (before any final norm)."""
        x = self._embed(pixels)  # [B, L, C]
        b, length, c = x.shape
        x = x.reshape(b * length, c)
        for weights in self.layers:
            x = self._layer(x, b, weights)
        return x.view(b, length, c)

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.hidden(pixels)
        if self.kind == SIGLIP:  # last_hidden_state is post-normed; the pooler is the attention-pooling head
            last = self.post_norm(x)
            return self.encoder.tokens_from(last, lambda: None if self.head is None else self.head(last))
        return self.encoder.tokens_from(x, lambda: self.post_norm(x[:, 0]))  # CLIP: the pooler normalizes CLS


def tower_forward(encoder, compile: bool = False, attention: str = "triton"):
    """The graph path's forward of one encoder: a ``FusedTower`` where it applies, else the HF forward."""
    problem = fused_tower_problem(encoder.tower)
    if problem is None:
        return FusedTower(encoder, compile, attention=attention)
    log.info("vision tower: HF forward (%s)", problem)
    return encoder.frame_tokens
