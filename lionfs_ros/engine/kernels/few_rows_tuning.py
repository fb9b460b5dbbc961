"""Picking the few-rows kernel's tiles on this GPU (``tune``): for each weight shape, weight dtype and row bucket,
candidate tiles and splits (and cuBLAS, for bf16/fp16 weights) are timed on the layers' own weights in a CUDA graph
when the engine is built; a candidate whose product differs from float32's is rejected, and the fastest goes into
``few_rows_linear.TUNED``, which ``pick_config`` reads."""
from __future__ import annotations

import time

import torch
from triton.compiler.errors import CompilationError
from triton.runtime.errors import OutOfResources, PTXASError

from .few_rows_linear import (BIT_MOVES, CUBLAS, FP16_OPERANDS, SMALL_M, SWAP_OPERANDS, TUNED, Config, _heuristic,
                              bucket, few_rows_linear, fused_few_rows_linear, tuned_key)

SEEDS = {  # the first candidates per row bucket; ``tune`` then walks to neighbours of the best
    1: ((1, 8, 512, 4, 3, 1, 0), (1, 8, 1024, 4, 3, 1, 0), (1, 32, 256, 4, 3, 1, 0), (1, 16, 512, 4, 3, 4, 0),
        (16, 32, 256, 4, 4, 4, 1), (16, 64, 256, 4, 4, 2, 1), (1, 32, 256, 4, 4, 4, 0), (1, 16, 256, 2, 4, 8, 0)),
    SMALL_M: ((16, 32, 256, 4, 4, 4, 1), (16, 16, 256, 4, 4, 8, 1), (16, 64, 256, 4, 4, 2, 1), (16, 32, 512, 4, 3, 4, 1),
              (16, 64, 128, 4, 4, 4, 1), (16, 128, 256, 8, 3, 1, 1), (16, 64, 256, 4, 4, 2, 0), (16, 32, 128, 4, 6, 8, 0),
              (16, 64, 256, 4, 4, 2, 3), (16, 64, 128, 4, 4, 4, 3), (16, 128, 128, 4, 4, 2, 3), (16, 128, 256, 8, 3, 1, 3)),
}
FP16_SEEDS = (  # tried first on a row-scaled FP8 product (the compile budget may end before the other seeds): the
    # fastest fp16-operand tiles of docs/benchmarks/fp8-f16-operands-11-rows-h200.json at 11 rows
    (16, 64, 256, 4, 3, 4, FP16_OPERANDS), (16, 64, 128, 4, 4, 1, FP16_OPERANDS), (16, 64, 128, 4, 4, 4, FP16_OPERANDS))
RANGES = {"block_n": (8, 128), "block_k": (128, 1024), "num_warps": (2, 8), "num_stages": (2, 8), "split": (1, 16)}
TUNE_TOLERANCE = 2e-2  # a candidate's output vs the heuristic's (relative norm): sum order and bf16 rounding only
SHARED_MEMORY = 200 * 1024  # bytes of pipelined tiles a candidate may ask for (H100/H200: 227 KB per SM)
TUNE_REPS = 3  # passes over the layers' weights per timing
TUNE_ROUNDS = 3  # neighbour walks after the seeds
NORM_EPS = 1e-5  # the RMSNorm's epsilon when timing a ``row_scale`` product (any: it only sets the rows' scale)
_TIMINGS: dict[tuple[int, int, int, int], dict] = {}  # microseconds per candidate, by ``TUNED``'s key
_COMPILED: set[tuple] = set()  # ``_kernel_key``s timed (so compiled) in this process
_REJECTED: dict[tuple[int, int, int, int], set] = {}  # candidates that failed to compile or gave another product


def _graph_us(run, reps: int, stream: torch.cuda.Stream) -> float:
    """Microseconds of one ``run``, ``reps`` runs replayed from one CUDA graph captured on ``stream``."""
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        run()  # compile outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        for _ in range(reps):
            run()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / reps


def _fits(c: Config) -> bool:
    block_m, block_n, block_k, warps, stages, split, flags = c
    if block_m == 1:  # the step's weight tile in registers: at most 128 values per thread
        return block_n * block_k <= 128 * 32 * warps
    return block_n >= 16 and stages * (block_n * block_k + 2 * block_m * block_k) <= SHARED_MEMORY


def neighbours(c: Config, fp16: bool = False) -> list[Config]:
    """The candidates one step from ``c``: one of block_n, block_k, warps, split doubled or halved, stages +-1, one
    flag flipped (the operand order only on the tensor cores; ``fp16``: the fp16 operands too, on the tensor
    cores)."""
    out = []
    for i, name in enumerate(("block_n", "block_k", "num_warps", "num_stages", "split"), start=1):
        lo, hi = RANGES[name]
        for v in ((c[i] + 1, c[i] - 1) if name == "num_stages" else (c[i] * 2, c[i] // 2)):
            if lo <= v <= hi:
                out.append((*c[:i], v, *c[i + 1:]))
    for flag in ((BIT_MOVES, SWAP_OPERANDS, *((FP16_OPERANDS,) if fp16 else ())) if c[0] > 1 else (BIT_MOVES,)):
        out.append((*c[:6], c[6] ^ flag))
    return [d for d in out if _fits(d)]


def _kernel_key(c: Config, itemsize: int) -> tuple:
    """What a candidate compiles to for weights of ``itemsize`` bytes (split itself is a launch argument; only
    split > 1 is compiled in)."""
    return (*c[:5], c[5] > 1, c[6], itemsize)


@torch.no_grad()
def tune(weights: list[tuple[torch.Tensor, torch.Tensor | None]], rows: int, dtype: torch.dtype = torch.bfloat16,
         deadline: float | None = None, walk: bool = True, row_scale: bool = False) -> dict:
    """Time candidate tiles/splits at ``rows`` rows on ``weights`` (same-shape ``(weight, scale)`` pairs, the scale
    None for a bf16/fp16 weight: the layers' own, so the timing reads memory, not a cache): cuBLAS (bf16/fp16
    weights), the heuristic and the seeds of the row bucket, then (``walk``) up to ``TUNE_ROUNDS`` walks to the
    untried neighbours of the best tile. Past ``deadline`` (a ``time.monotonic`` time) only candidates already
    compiled in this process are timed. A candidate whose output is not the float32 product's (``TUNE_TOLERANCE``)
    is rejected. ``row_scale``: the product is called with its input RMSNorm's weight in the codes
    (``norm=(None, sums, eps)``, FP8 codes made with ``fold_norms``): timed so, and the fp16 operands tried too.
    Keeps the fastest in ``TUNED``; a second call for the same shape and bucket goes on from the first's timings.
    Returns ``{"shape", "weight_bytes", "rows", "config", "us", "best_tile", "heuristic_us", "cublas_us", "tb_per_s", "tried", "rejected"}`` (microseconds per product; config "cublas" where cuBLAS won)."""
    w0, s0 = weights[0]
    n, k = w0.shape
    fp8 = s0 is not None
    x = torch.randn(rows, k, device=w0.device, dtype=dtype)
    fp16 = row_scale and fp8 and rows > 1
    norm = (None, x.float().pow(2).sum(-1)[None].contiguous(), NORM_EPS) if row_scale else None  # one producer tile
    key = tuned_key(rows, w0)
    timings = _TIMINGS.setdefault(key, {})
    stream = torch.cuda.Stream(w0.device)  # one per call: each new stream would take split-K counters
    ref = x.float() @ w0.float().t()  # [rows, N]
    if fp8:
        ref = ref * s0
    if norm is not None:
        ref = ref * torch.rsqrt(norm[1][0] / k + NORM_EPS)[:, None]
    rejected = _REJECTED.setdefault(key, set())

    def as_candidate(c: Config) -> Config:  # the bit-moves upcast exists for FP8 codes only
        return c if fp8 else (*c[:6], c[6] & SWAP_OPERANDS)

    def product(w, scale, c) -> torch.Tensor:
        if norm is None or c == CUBLAS:
            return few_rows_linear(x, w, scale, config=c)
        return fused_few_rows_linear(x, w, scale, norm=norm, config=c)[0]

    def run_all(c):
        for w, scale in weights:
            product(w, scale, c)

    def measure(cands) -> None:
        for c in dict.fromkeys(cands):
            late = deadline is not None and time.monotonic() > deadline
            compiled = c == CUBLAS or _kernel_key(c, w0.element_size()) in _COMPILED
            if c in timings or (late and not compiled):
                continue
            try:
                timings[c] = _graph_us(lambda c=c: run_all(c), TUNE_REPS, stream) / len(weights)
                out = product(w0, s0, c).float()
                if not float((out - ref).norm()) <= TUNE_TOLERANCE * float(ref.norm()):
                    rejected.add(c)
            except (CompilationError, OutOfResources, PTXASError):  # too much shared memory / registers here
                rejected.add(c)
            if c in rejected:
                timings[c] = float("inf")
            if c != CUBLAS:
                _COMPILED.add(_kernel_key(c, w0.element_size()))

    def best_tile() -> Config | None:
        return min((c for c in timings if c != CUBLAS), key=timings.get, default=None)

    heuristic = _heuristic(n, k, w0.device)
    seeds = [as_candidate(c) for c in SEEDS[bucket(rows)] if _fits(c)]
    measure([*(FP16_SEEDS if fp16 else ()), *(() if fp8 else (CUBLAS,)), heuristic, *seeds])
    for _ in range(TUNE_ROUNDS if walk else 0):
        best = best_tile()
        if best is None:  # past the deadline before any tile compiled: cuBLAS only
            break
        measure([as_candidate(c) for c in neighbours(best, fp16)])
        if best_tile() == best:
            break
    best = min(timings, key=timings.get)
    if best in rejected:
        raise RuntimeError(f"few_rows_linear: no tile configuration reproduced the [{n}, {k}] product at {rows} rows")
    TUNED[key] = best
    tile = best_tile()
    return {"shape": [n, k], "weight_bytes": w0.element_size(), "rows": rows,
            "config": best if best == CUBLAS else list(best), "us": timings[best],
            "best_tile": None if tile is None else list(tile),  # the fastest tile, where cuBLAS won too
            "heuristic_us": None if heuristic in rejected else timings.get(heuristic),  # None: not timed (late)
            "cublas_us": timings.get(CUBLAS), "tb_per_s": w0.numel() * w0.element_size() / (timings[best] * 1e-6) / 1e12,
            "tried": len(timings), "rejected": [list(c) for c in rejected if c != CUBLAS]}
