"""The weight-matrix floor of one LLM step: every linear layer of the backbone (q, k, v, o, gate, up, down in each
layer, and the output head) applied to ``M`` rows, replayed from one CUDA graph (no launch gaps). An LLM step
must at least read these weights once, so its time over this floor is what the rest (attention, norms,
routing, launch gaps) costs.

``weights='fp8'``: the products the FP8 engine runs, with the same kernel (``kernels/few_rows_linear.py``): each
layer's fused q/k/v, o, fused gate/up and down as weight-only FP8, the output head in the model's dtype.
``copy_floor`` measures the device's copy bandwidth, to put a kernel's weight-read rate against it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..quantization import Fp8Weight, linear, quantize_fp8
from .graph_timing import graph_ms

FLOOR_REPS = 20
COPY_BYTES = 1 << 31  # 2 GiB: far larger than the L2


def _graph_ms(device, products) -> float:
    """Median milliseconds of all ``products`` (callables) replayed as one CUDA graph."""
    return graph_ms(lambda: [run() for run in products], device, FLOOR_REPS)


def _fp8_matrices(llm) -> list:
    """What the FP8 engine multiplies with: per layer fused q/k/v, o, fused gate/up, down (FP8); the head (as is)."""
    out = []
    for layer in llm.get_decoder().layers:
        attn, mlp = layer.self_attn, layer.mlp
        for group in ((attn.q_proj, attn.k_proj, attn.v_proj), (attn.o_proj,), (mlp.gate_proj, mlp.up_proj),
                      (mlp.down_proj,)):
            out.append(quantize_fp8(torch.cat([m.weight for m in group])))
    out.append(llm.get_output_embeddings().weight)
    return out


@torch.no_grad()
def weight_floor(llm, rows: int, weights: str = "native") -> dict:
    """Median milliseconds of all the backbone's matrix products at ``rows`` rows, and the bandwidth it implies."""
    device = next(llm.parameters()).device
    if device.type != "cuda":
        return {"rows": rows, "skipped": "needs CUDA"}
    dtype = next(llm.parameters()).dtype
    if weights == "fp8":
        matrices = _fp8_matrices(llm)
    else:
        matrices = [m.weight for m in llm.modules() if isinstance(m, nn.Linear)]
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1], device=device, dtype=dtype) for w in matrices}
    ms = _graph_ms(device, [lambda w=w: linear(inputs[w.shape[1]], w) for w in matrices])
    nbytes = sum(w.nbytes() if isinstance(w, Fp8Weight) else w.numel() * w.element_size() for w in matrices)
    return {"rows": rows, "weights": weights, "ms": ms, "weight_bytes": nbytes,
            "tb_per_s": nbytes / (ms * 1e-3) / 1e12, "matrices": len(matrices)}


@torch.no_grad()
def copy_floor(device: torch.device) -> dict:
    """A device-to-device copy of ``COPY_BYTES``: TB/s counting the bytes read and written."""
    if device.type != "cuda":
        return {"skipped": "needs CUDA"}
    src = torch.randint(0, 255, (COPY_BYTES,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = _graph_ms(device, [lambda: dst.copy_(src)])
    del src, dst
    return {"bytes": COPY_BYTES, "ms": ms, "tb_per_s_read_plus_write": 2 * COPY_BYTES / (ms * 1e-3) / 1e12}
