"""Time a piece of GPU work as a CUDA graph: no launch gaps, no Python between its kernels."""
from __future__ import annotations

import torch


def graph_ms(body, device: torch.device, replays: int, warmup_runs: int = 1, warmup_replays: int = 0) -> float:
    """Median milliseconds of one replay of ``body`` (a callable) captured as one CUDA graph on a side stream:
    ``warmup_runs`` eager runs first (compilation, cuBLAS handles and workspaces), then ``warmup_replays``
    untimed replays, then ``replays`` timed ones (CUDA events)."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(warmup_runs):
            body()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        body()
    for _ in range(warmup_replays):
        graph.replay()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]
