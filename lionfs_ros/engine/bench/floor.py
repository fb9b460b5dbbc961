"""The weight-matrix floor of one LLM step: every linear layer of the backbone (q, k, v, o, gate, up, down in each
layer, and the output head) applied to ``M`` rows, replayed from one CUDA graph (no launch gaps). An LLM step
must at least read these weights once, so its time over this floor is what the rest (attention, norms,
routing, launch gaps) costs."""
from __future__ import annotations

import torch
from torch import nn

FLOOR_REPS = 20


@torch.no_grad()
def weight_floor(llm, rows: int) -> dict:
    """Median milliseconds of all the backbone's matrix products at ``rows`` rows, and the bandwidth it implies."""
    device = next(llm.parameters()).device
    if device.type != "cuda":
        return {"rows": rows, "skipped": "needs CUDA"}
    weights = [m.weight for m in llm.modules() if isinstance(m, nn.Linear)]
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1], device=device, dtype=w.dtype) for w in weights}
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for w in weights:  # warm-up: cuBLAS handles and workspaces
            torch.matmul(inputs[w.shape[1]], w.t())
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        for w in weights:
            torch.matmul(inputs[w.shape[1]], w.t())
    times = []
    for _ in range(FLOOR_REPS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    ms = sorted(times)[len(times) // 2]
    nbytes = sum(w.numel() * w.element_size() for w in weights)
    return {"rows": rows, "ms": ms, "weight_bytes": nbytes, "tb_per_s": nbytes / (ms * 1e-3) / 1e12,
            "matrices": len(weights)}
