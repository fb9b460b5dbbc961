"""How the static backend multiplies by its projection weights: weight-only FP8 (``EngineConfig.weights =
"fp8"``) and the few-rows kernel against cuBLAS (``EngineConfig.linear_kernel = "auto"``).

At 1 to 11 rows per step (a generated token, a decided frame) every matrix product of the backbone
reads its whole weight matrix and does almost no arithmetic, so the LLM step is bound by memory
bandwidth. Two ways to read less time per step:

- **Weight-only FP8.** Weights stored in FP8 (e4m3, one byte) halve what each step must read against bf16.
  Only the weights are FP8; activations stay in the model's dtype and the products accumulate in
  float32. Each output channel (weight row) ``n`` gets its own scale ``s[n] = max|W[n, :]| / 448`` (448:
  e4m3's largest finite value), ``Q = round_e4m3(W / s)``, and ``x @ W.T ~= (x @ Q.T) * s``: the scale
  factors out of the sum over the input dim, so the kernel multiplies it in once per output. What is
  quantized: the decoder layers' q/k/v, o, gate/up and down projections (the fused copies of
  ``static_decoder.FusedDecoder``) and, with ``fp8_head`` (default), the output head, once, when the engine is
  built. With ``fold_norms`` (default) the RMSNorm before q/k/v, gate/up and the head is folded into their codes
  (``W diag(g)``, the norm then without a weight and each output row scaled by its ``rstd`` in the product) and the
  gate/up rows are (gate, up) pairs whose product stores the SiLU gate. The embeddings, the routers and the vision
  towers stay as they are (the towers run hundreds of rows per frame: bound by arithmetic, not by reading
  weights). The bench checks the decisions, read from the FP8 head's logits, against the bf16 engine's. The model's own
  bf16 weights are kept (the dynamic model path and training use them), so FP8 adds about half the
  decoder's bytes to GPU memory: it buys speed, not memory. It needs a CUDA GPU with FP8 conversions
  (compute capability >= 8.9: Ada L4/L40/RTX 40xx, Hopper H100/H200) and Triton; ``fp8_problem`` says
  why not elsewhere, and the engine refuses the option there with that reason.
- **The few-rows kernel for bf16 weights** (``StreamedWeight``). At these shapes cuBLAS reads bf16
  weights well below the memory's bandwidth; the engine's own kernel sometimes reads faster. When the
  engine is built, each weight shape of the decoder (and the output head) is timed at one row and at a
  frame's rows with cuBLAS and with the kernel's candidate tiles, on the layers' own weights, and runs
  with whichever was faster (``tune_layers``): never slower than cuBLAS as timed there. The weights are
  the model's own tensors (no copy). Elsewhere (no CUDA, no Triton, older than compute capability 8.0)
  ``F.linear`` runs (``few_rows_problem`` says why).

Both run in a Triton kernel (``kernels/few_rows_linear.py``) that loads the weight tile, upcasts FP8
codes in registers and multiplies on the tensor cores; it runs inside the CUDA graphs like any kernel.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite e4m3fn value
MIN_CAPABILITY = (8, 9)  # FP8 conversions in hardware: Ada (8.9) and Hopper (9.0) onwards
KERNEL_MIN_CAPABILITY = (8, 0)  # the few-rows kernel's bf16 tensor-core products: Ampere onwards
TINY_SCALE = 1e-12  # a row of zeros gets this scale (its codes are all zero either way)
TUNE_SECONDS = 6.0  # at most this long compiling tile candidates at engine build (then: compiled ones only)
QUANTIZE_ROWS = 4096  # weight rows quantized at a time (their float32 copy: 64 MB at 4,096 columns)


@dataclass
class Fp8Weight:
    """A linear layer's weight ``[N, K]`` as FP8 codes and one float32 scale per output channel."""

    codes: torch.Tensor  # [N, K] float8_e4m3fn
    scale: torch.Tensor  # [N] float32
    norm_in_codes: bool = False  # the codes are of ``W diag(g)``: the RMSNorm before the product has weight 1
    gated: bool = False  # the rows are (gate, up) pairs and the product gives ``silu(gate) * up`` ``[..., N / 2]``

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape

    def nbytes(self) -> int:
        return self.codes.numel() * self.codes.element_size() + self.scale.numel() * self.scale.element_size()


def quantize_fp8(weight: torch.Tensor, norm_weight: torch.Tensor | None = None) -> Fp8Weight:
    """``W [N, K]`` -> per-output-channel FP8 (computed in float32, ``QUANTIZE_ROWS`` rows at a time: the float32
    copy of a Llama-3-8B output head would take 2.1 GB at once; any device). ``norm_weight [K]``: the weight ``g`` of
    the RMSNorm before the product, multiplied into the columns first (the codes are of ``W diag(g)``)."""
    rows = weight.shape[0]
    codes = torch.empty(weight.shape, dtype=FP8_DTYPE, device=weight.device)
    scale = torch.empty(rows, dtype=torch.float32, device=weight.device)
    g = None if norm_weight is None else norm_weight.detach().float()[None, :]  # [1, K]
    for start in range(0, rows, QUANTIZE_ROWS):  # each row on its own: the chunks change nothing
        w = weight[start:start + QUANTIZE_ROWS].detach().float()  # [n, K]
        if g is not None:
            w = w * g
        s = (w.abs().amax(dim=1) / FP8_MAX).clamp(min=TINY_SCALE)  # [n]
        codes[start:start + QUANTIZE_ROWS] = (w / s[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
        scale[start:start + QUANTIZE_ROWS] = s
    return Fp8Weight(codes, scale, norm_weight is not None)


def dequantize_fp8(w: Fp8Weight, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weight the FP8 product computes with: ``Q * s`` ``[N, K]``."""
    return (w.codes.double() * w.scale.double()[:, None]).to(dtype)


@dataclass
class StreamedWeight:
    """A bf16/fp16 linear weight ``[N, K]`` (the model's own tensor, not a copy) that runs with whichever of cuBLAS
    and the few-rows kernel ``tune_layers`` timed faster for its shape and row bucket on this GPU."""

    weight: torch.Tensor  # [N, K]

    @property
    def shape(self) -> torch.Size:
        return self.weight.shape


def fp8_linear_reference(x: torch.Tensor, w: Fp8Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """What the kernel computes, in plain torch: ``(x @ Q.T) * s + b``, summed in float64 (the kernel: float32),
    output in ``x``'s dtype."""
    out = (x.double() @ w.codes.double().t()) * w.scale.double()
    if bias is not None:
        out = out + bias.double()
    return out.to(x.dtype)


def fp8_problem(device: torch.device) -> str | None:
    """None if weight-only FP8 can run on ``device``, else the reason it cannot."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"it needs a CUDA GPU with compute capability >= 8.9 (H100/H200, L4/L40); the model is on {device.type}"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < MIN_CAPABILITY:
        return (f"it needs compute capability >= {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} (H100/H200, L4/L40);"
                f" {torch.cuda.get_device_name(device)} is {major}.{minor}")
    try:
        import triton  # noqa: F401
    except ImportError:
        return "it needs Triton (pip install triton), which is not installed"
    return None


def few_rows_problem(device: torch.device, dtype: torch.dtype | None = None) -> str | None:
    """None if the few-rows kernel can run on ``device`` for weights of ``dtype`` (``linear_kernel='auto'`` tunes
    it there), else why not."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"it needs a CUDA GPU; the model is on {device.type}"
    if torch.cuda.get_device_capability(device) < KERNEL_MIN_CAPABILITY:
        return f"{torch.cuda.get_device_name(device)} is older than compute capability 8.0 (no bf16 tensor cores)"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "it needs Triton (pip install triton), which is not installed"
    if dtype == torch.float32:
        return "float32 weights: the kernel's tensor-core products would round them to TF32; cuBLAS keeps float32"
    return None


def linear(x: torch.Tensor, weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x [..., K]`` -> ``[..., N]``: ``F.linear`` for a plain weight; the few-rows kernel (or cuBLAS, as tuned) for a
    ``StreamedWeight``; the FP8 kernel for an ``Fp8Weight``.

    Off the GPU (tests of the static decoder's wiring; the engine uses neither there) the reference math runs."""
    if isinstance(weight, StreamedWeight):
        if not x.is_cuda:
            return F.linear(x, weight.weight, bias)
        codes, scale = weight.weight, None
    elif isinstance(weight, Fp8Weight):
        if not x.is_cuda:
            out = fp8_linear_reference(x, weight, bias)
            return gate_pairs(out) if weight.gated else out
        codes, scale = weight.codes, weight.scale
    else:
        return F.linear(x, weight, bias)
    from .kernels.few_rows_linear import few_rows_linear

    rows = x.reshape(-1, x.shape[-1])  # [..., K] -> [M, K]: the kernel takes a matrix
    return few_rows_linear(rows, codes, scale, bias, gate=gated(weight)).view(*x.shape[:-1], -1)


def gated(weight) -> bool:
    """Whether this product gives the SiLU gate's output (FP8 codes of (gate, up) row pairs) rather than gate and up."""
    return isinstance(weight, Fp8Weight) and weight.gated


def gate_pairs(pairs: torch.Tensor) -> torch.Tensor:
    """``[..., 2I]`` of (gate, up) column pairs -> ``silu(gate) * up`` ``[..., I]`` in float32, rounded once (the
    compiled gate's arithmetic, as the kernel computes it)."""
    gate, up = pairs.float().unflatten(-1, (-1, 2)).unbind(-1)
    return (F.silu(gate) * up).to(pairs.dtype)


def folds(x: torch.Tensor, weight, norm: bool = False) -> bool:
    """Whether ``fused_linear`` runs ``x @ weight.T`` in the few-rows kernel with the neighbouring add folded in (and,
    ``norm``, the input RMSNorm): a ``StreamedWeight`` or ``Fp8Weight`` whose pick for these rows (at most one row
    block) is the kernel, on the GPU. A norm whose weight is in the FP8 codes (``norm_in_weight``) folds everywhere
    (each output row scaled after the sum). Another folds into the one-row path only. In the tensor-core path, working
    on the activation tile between its load and the product stops Triton pipelining the FP8 loop (H200, llama3-8b FP8:
    the decided frame's LLM step went 3.85 -> 4.78 ms with it; ``scripts/fp8_tile_probe.py --rows 11``: +4-19 us a
    product). A swapped bf16 tile lost only 0.7-1.3 us a product in that probe, but the engine's bf16 frame with the
    fold there was slower, 7.09 ms against 6.82 without (LLM step 5.35 against 5.10; H200, one bench run)."""
    if not (x.is_cuda and isinstance(weight, (StreamedWeight, Fp8Weight))):
        return False
    from .kernels.few_rows_linear import CUBLAS, SMALL_M, pick_config

    rows = x.numel() // x.shape[-1]
    if not 1 <= rows <= SMALL_M:
        return False
    config = pick_config(rows, _operands(weight)[0])
    return config != CUBLAS and (not norm or config[0] == 1 or norm_in_weight(weight))


def norm_in_weight(weight) -> bool:
    """Whether the RMSNorm before this product has its weight in the product's (FP8 codes of ``W diag(g)``)."""
    return isinstance(weight, Fp8Weight) and weight.norm_in_codes


def fused_linear(x: torch.Tensor, weight, bias: torch.Tensor | None = None, norm: tuple | None = None,
                 residual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``linear`` with the input RMSNorm (``norm = (weight, sums [T, M], eps)``: ``x`` is the stream, ``sums`` its
    per-tile sums of squares) and/or the residual add after it (``residual [M, N]``: returns ``residual + x @ W.T``
    and that stream's sums of squares ``[T, M]``) folded into the kernel; only where ``folds`` says it runs."""
    from .kernels.few_rows_linear import fused_few_rows_linear

    codes, scale = _operands(weight)
    return fused_few_rows_linear(x, codes, scale, bias, norm=norm, residual=residual, gate=gated(weight))


PROJECTIONS = ("qkv_weight", "o_weight", "gate_up_weight", "down_weight")  # a fused decoder layer's weights


def stream_layers(layers) -> None:
    """Wrap the fused decoder layers' plain projection weights as ``StreamedWeight``s (FP8 ones stay FP8)."""
    for fl in layers:
        for name in PROJECTIONS:
            w = getattr(fl, name)
            if isinstance(w, torch.Tensor):
                setattr(fl, name, StreamedWeight(w))


def quantize_layers(layers, norms_in_codes: bool = False, gate_pairs_in_codes: bool = False) -> int:
    """Replace the fused decoder layers' projection weights by ``Fp8Weight``s; returns the FP8 bytes made.

    ``norms_in_codes``: the q/k/v and gate/up codes are made of ``W diag(g)`` with ``g`` the weight of the RMSNorm
    before them, and the layers' ``ln1``/``ln2`` become ones (every path then normalizes without a weight, and the
    product folding that norm scales its output rows instead of touching its loop). ``gate_pairs_in_codes`` (a SiLU
    MLP): the gate/up rows interleaved as (gate, up) pairs (and the bias with them), so the product computes the
    SiLU gate as it stores its output (``Fp8Weight.gated``): no gate kernel between it and the down product."""
    made = 0
    for fl in layers:
        norms = {"qkv_weight": fl.ln1, "gate_up_weight": fl.ln2} if norms_in_codes else {}
        if gate_pairs_in_codes:  # [gate; up] [2I, K] -> rows gate_0, up_0, gate_1, up_1, ...
            rows = fl.gate_up_weight.shape[0]
            fl.gate_up_weight = fl.gate_up_weight.view(2, rows // 2, -1).transpose(0, 1).reshape(rows, -1)
            if fl.gate_up_bias is not None:
                fl.gate_up_bias = fl.gate_up_bias.view(2, rows // 2).t().reshape(rows)
        for name in PROJECTIONS:
            q = quantize_fp8(getattr(fl, name), norms.get(name))
            q.gated = gate_pairs_in_codes and name == "gate_up_weight"
            setattr(fl, name, q)
            made += q.nbytes()
        if norms_in_codes:
            fl.ln1, fl.ln2 = torch.ones_like(fl.ln1), torch.ones_like(fl.ln2)
    return made


def _operands(w) -> tuple[torch.Tensor, torch.Tensor | None]:
    return (w.codes, w.scale) if isinstance(w, Fp8Weight) else (w.weight, None)


def tune_layers(layers, rows: int, dtype: torch.dtype, head=None) -> list[dict]:
    """Pick the few-rows kernel's tiles (or cuBLAS, for bf16/fp16 weights) for each distinct weight of these layers
    (``Fp8Weight``s and ``StreamedWeight``s; plain tensors are not tuned) and of ``head`` (the output head, if it is
    one of those) on this GPU, for a generated token (1 row) and for ``rows`` rows (a decided frame), timed on the
    layers' own weights: first each shape's seed candidates, then walks to better neighbours, compiling new kernels
    for at most ``TUNE_SECONDS`` in all (once per engine build). Returns the last timing report per shape, kind and
    bucket (``kernels.few_rows_tuning.tune``)."""
    from .kernels.few_rows_linear import TUNED, tuned_key
    from .kernels.few_rows_tuning import tune

    by_kind: dict[tuple, list] = {}  # (N, K, dtype, the norm's weight in the codes) -> the layers' operands
    for w in [getattr(fl, name) for fl in layers for name in PROJECTIONS] + [head]:
        if isinstance(w, (Fp8Weight, StreamedWeight)):
            codes, scale = _operands(w)
            by_kind.setdefault((*codes.shape, codes.dtype, norm_in_weight(w)), []).append((codes, scale))
    jobs = [(weights, r, kind[-1]) for r in dict.fromkeys((1, rows)) for kind, weights in by_kind.items()
            if tuned_key(r, weights[0][0]) not in TUNED]
    deadline = time.monotonic() + TUNE_SECONDS
    for weights, r, row_scale in jobs:
        tune(weights, r, dtype, deadline, walk=False, row_scale=row_scale)
    return [tune(weights, r, dtype, deadline, row_scale=row_scale) for weights, r, row_scale in jobs]
