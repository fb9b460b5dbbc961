"""HF LlamaRMSNorm's output arithmetic, shared by the engine's kernels that apply a norm as they go (the few-rows
product's input, the routing kernels' layer norm and merge)."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def llama_rms_scale(x, rstd, g, dtype: tl.constexpr):
    """float32 ``x`` times its row's ``rstd``, rounded to ``dtype``, times the float32 weight ``g``, rounded again
    (``weight * (x * rsqrt(mean(x^2) + eps)).to(dtype)``, the product taken in float32 as torch does)."""
    return (g * (x * rstd).to(dtype).to(tl.float32)).to(dtype)
