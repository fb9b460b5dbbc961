"""Programmatic dependent launch of the engine's kernels (``engine/kernels/dependent_launch.py``).

Off by default and wherever it cannot run (CPU, Triton's interpreter). Switched on, on a Hopper GPU a chain of the project's
kernels in one CUDA graph, each reading what the kernel before it wrote, computes the products of fresh inputs on
every replay (a kernel that started before its predecessor's writes were visible would read the last replay's): each
kernel lets the next one launch as soon as it has waited for its own predecessor."""
import pytest
import torch

triton = pytest.importorskip("triton")
from lionfs_ros.engine.kernels.dependent_launch import dependent_launch, launch_options, set_dependent_launch  # noqa: E402
from lionfs_ros.engine.kernels.few_rows_linear import few_rows_linear  # noqa: E402

HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (9, 0)


def test_off_on_the_cpu():
    set_dependent_launch(True)
    try:
        assert not dependent_launch(torch.device("cpu"))
        assert launch_options(torch.device("cpu")) == {"PDL": False}
    finally:
        set_dependent_launch(False)


@pytest.mark.skipif(not HOPPER, reason="needs a CUDA GPU of compute capability >= 9.0")
def test_a_graphed_chain_reads_each_replays_fresh_inputs():
    device = torch.device("cuda")
    assert not dependent_launch(device), "off by default"
    set_dependent_launch(True)
    try:
        _chain_on(device)
    finally:
        set_dependent_launch(False)


def _chain_on(device: torch.device) -> None:
    assert dependent_launch(device), "PDL should be on for a Hopper GPU with this Triton"
    gen = torch.Generator(device=device).manual_seed(0)
    width, rows, links = 1024, 11, 6
    weights = [torch.randn(width, width, device=device, generator=gen).div(width ** 0.5).bfloat16()
               for _ in range(links)]
    # the few-rows kernel itself (no cuBLAS): one slice, then split-K (its tile counters, its last slice's sum)
    kernels = [(16, 64, 128, 4, 3, 1, 0), (16, 64, 128, 4, 3, 4, 0)]
    static_in = torch.zeros(rows, width, dtype=torch.bfloat16, device=device)

    def chain():
        y = static_in * 1.0  # a torch kernel writes the first input
        for i, w in enumerate(weights):
            y = few_rows_linear(y, w, config=kernels[i % len(kernels)])  # each link reads what the one before wrote
        return y

    chain()  # compile outside the capture
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        out = chain()
    for seed in range(4):
        x = torch.randn(rows, width, device=device, generator=gen.manual_seed(100 + seed))
        static_in.copy_(x.bfloat16())
        graph.replay()
        want = x.bfloat16().float()
        for w in weights:
            want = (want @ w.float().t()).bfloat16().float()
        err = (out.float() - want).norm() / want.norm()
        assert err < 2e-2, f"replay {seed}: relative error {err:.3g}"
