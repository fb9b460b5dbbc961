"""The weight-matrix floor of one LLM step: every linear layer of the backbone applied to ``M`` rows, replayed from
one CUDA graph (no launch gaps). An LLM step must at least read these weights once, so its time over this floor
is what the rest (attention, norms, routing, launch gaps) costs.

``matrices='modules'``: the model's own ``nn.Linear``s (q, k, v, o, gate, up, down in each layer, and the output
head), by cuBLAS. ``matrices='engine'``: what the static backend multiplies: per layer the fused q/k/v, o, the fused
gate/up and down, and the output head, each through ``quantization.linear`` as the engine calls it, so with the
row bucket's pick of ``kernels/few_rows_linear.py``'s tuning (measured after an engine was built, these are the
engine's own picks; before, cuBLAS for bf16 weights and the heuristic tiles for FP8 codes); ``weights='fp8'``:
the layers' four and the output head as weight-only FP8 (as the FP8 engine runs them by default, ``fp8_head``).
``copy_floor`` measures the device's copy bandwidth, to put a kernel's weight-read rate against it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..quantization import Fp8Weight, StreamedWeight, linear, quantize_fp8
from .graph_timing import graph_ms

FLOOR_REPS = 20
COPY_BYTES = 1 << 31  # 2 GiB: far larger than the L2


def _graph_ms(device, products) -> float:
    """Median milliseconds of all ``products`` (callables) replayed as one CUDA graph."""
    return graph_ms(lambda: [run() for run in products], device, FLOOR_REPS)


def _engine_matrices(llm, weights: str) -> list:
    """What the static backend multiplies with: per layer fused q/k/v, o, fused gate/up, down (FP8 codes, or the
    model's dtype through the few-rows kernel's picks); the output head (the same)."""
    out = []
    for layer in llm.get_decoder().layers:
        attn, mlp = layer.self_attn, layer.mlp
        for group in ((attn.q_proj, attn.k_proj, attn.v_proj), (attn.o_proj,), (mlp.gate_proj, mlp.up_proj),
                      (mlp.down_proj,)):
            fused = torch.cat([m.weight for m in group])
            out.append(quantize_fp8(fused) if weights == "fp8" else StreamedWeight(fused))
    head = llm.get_output_embeddings().weight
    out.append(quantize_fp8(head) if weights == "fp8" else StreamedWeight(head))
    return out


def _nbytes(w) -> int:
    if isinstance(w, Fp8Weight):
        return w.nbytes()
    w = w.weight if isinstance(w, StreamedWeight) else w
    return w.numel() * w.element_size()


@torch.no_grad()
def weight_floor(llm, rows: int, weights: str = "native", matrices: str = "modules") -> dict:
    """Median milliseconds of all the backbone's matrix products at ``rows`` rows, and the bandwidth it implies
    (``matrices``: 'modules' or 'engine', see above)."""
    device = next(llm.parameters()).device
    if device.type != "cuda":
        return {"rows": rows, "skipped": "needs CUDA"}
    dtype = next(llm.parameters()).dtype
    engine = matrices == "engine" or weights == "fp8"  # FP8 codes exist only as the engine's fused matrices
    if engine:
        mats = _engine_matrices(llm, weights)
    else:
        mats = [m.weight for m in llm.modules() if isinstance(m, nn.Linear)]
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1], device=device, dtype=dtype) for w in mats}
    ms = _graph_ms(device, [lambda w=w: linear(inputs[w.shape[1]], w) for w in mats])
    nbytes = sum(_nbytes(w) for w in mats)
    return {"rows": rows, "weights": weights, "matrices": "engine" if engine else "modules", "ms": ms,
            "weight_bytes": nbytes, "tb_per_s": nbytes / (ms * 1e-3) / 1e12, "count": len(mats)}


@torch.no_grad()
def copy_floor(device: torch.device) -> dict:
    """A device-to-device copy of ``COPY_BYTES``: TB/s counting the bytes read and written."""
    if device.type != "cuda":
        return {"skipped": "needs CUDA"}
    src = torch.randint(0, 255, (COPY_BYTES,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = _graph_ms(device, [lambda dst=dst, src=src: dst.copy_(src)])
    del src, dst
    return {"bytes": COPY_BYTES, "ms": ms, "tb_per_s_read_plus_write": 2 * COPY_BYTES / (ms * 1e-3) / 1e12}
