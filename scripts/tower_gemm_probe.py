"""The SigLIP-L/16-384 tower's four products at one frame (576 tokens) against other forms of the same products
(issue 14, a probe).

In an FP8 decided frame of ``lionfs bench --preset llama3-8b`` the tower's cuBLAS products take 1.01 ms of the
frame's 5.5 (twelfth session's profile, ``docs/benchmarks/README.md``), at 257 (q/k/v), 221 (out), 405 (fc1 + GELU)
and 452 (fc2) TFLOP/s, where the H200 runs large bf16 products near 800. This probe times each product as the engine
runs it (``engine/fused_tower.py``: ``addmm`` with the bias, the residual added in place, GELU in cuBLASLt's
epilogue) over 24 weight copies (a frame's 24 layers) in one CUDA graph, against:
- ``transposed``: the same product as ``W x^T`` (cuBLAS then tiles the 576 tokens as the narrow side);
- ``autotuned``: the engine's form (a residual form as ``r + x W^T``, out of place) compiled by
  ``torch.compile(mode="max-autotune-no-cudagraphs")`` (inductor times its Triton matmul templates against cuBLAS
  and keeps the faster), where ``--autotune`` is given.
Each form is checked against the engine's (relative error). Prints and writes JSON (``--out``).

    PYTHONPATH=. python3 scripts/tower_gemm_probe.py --out $OUT [--autotune]
    PYTHONPATH=. python3 scripts/tower_gemm_probe.py --smoke --out /tmp/tg   # CPU, small shapes, no graphs
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lionfs_ros.engine.bench.graph_timing import graph_ms

TOKENS, WIDTH, MLP, LAYERS = 576, 1024, 4096, 24  # SigLIP-L/16-384 at one frame
SMOKE = (64, 32, 64, 2)
REPLAYS = 7


def shapes(width: int, mlp: int) -> dict[str, tuple[int, int, str]]:
    """name -> (in features K, out features N, the engine's form)."""
    return {"qkv": (width, 3 * width, "bias"), "out": (width, width, "residual"), "fc1": (width, mlp, "gelu"),
            "fc2": (mlp, width, "residual")}


def engine_form(kind: str):
    """The product as ``fused_tower._layer`` runs it: ``x [M, K]``, ``w [N, K]``, ``b [N]``, ``r [M, N]``."""
    if kind == "bias":
        return lambda x, w, b, r: torch.addmm(b, x, w.t())
    if kind == "gelu":
        return lambda x, w, b, r: torch._addmm_activation(b, x, w.t(), use_gelu=True)
    return lambda x, w, b, r: r.addmm_(x, w.t())  # the residual (its bias already added) in place


def transposed_form(kind: str):
    """The same product as ``(W x^T)^T`` (left as the transposed view: what a consumer reading strides would see)."""
    if kind == "gelu":
        return lambda x, w, b, r: torch.nn.functional.gelu(torch.addmm(b[:, None], w, x.t()), approximate="tanh").t()
    if kind == "bias":
        return lambda x, w, b, r: torch.addmm(b[:, None], w, x.t()).t()
    return lambda x, w, b, r: torch.addmm(r.t(), w, x.t()).t()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--autotune", action="store_true")
    parser.add_argument("--budget-s", type=float, default=150.0, help="stop starting new autotunes after this")
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    t0 = time.monotonic()
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    tokens, width, mlp, layers = SMOKE if args.smoke else (TOKENS, WIDTH, MLP, LAYERS)
    result = {"device": "cpu" if args.smoke else torch.cuda.get_device_name(device), "torch": torch.__version__,
              "tokens": tokens, "layers": layers, "shapes": {}}
    gen = torch.Generator(device=device).manual_seed(0)
    for name, (k, n, kind) in shapes(width, mlp).items():
        ws = [torch.randn(n, k, device=device, dtype=dtype, generator=gen) * k ** -0.5 for _ in range(layers)]
        bs = [torch.randn(n, device=device, dtype=dtype, generator=gen) * 0.1 for _ in range(layers)]
        x = torch.randn(tokens, k, device=device, dtype=dtype, generator=gen)
        residual = torch.randn(tokens, n, device=device, dtype=dtype, generator=gen)
        forms = {"engine": engine_form(kind), "transposed": transposed_form(kind)}
        if args.autotune and not args.smoke and time.monotonic() - t0 < args.budget_s:
            forms["autotuned"] = torch.compile(engine_form(kind) if kind != "residual" else
                                               (lambda x, w, b, r: r + x @ w.t()),
                                               mode="max-autotune-no-cudagraphs", dynamic=False)
        ref = engine_form(kind)(x, ws[0], bs[0], residual.clone()).float()
        entry = result["shapes"].setdefault(name, {"k": k, "n": n, "form": kind, "variant": {}})
        flops = 2.0 * tokens * k * n
        for label, fn in forms.items():
            try:
                got = fn(x, ws[0], bs[0], residual.clone()).float()
                err = float((got - ref).norm() / ref.norm())
                rs = [residual.clone() for _ in range(layers)]

                def body(fn=fn, rs=rs):
                    for w, b, r in zip(ws, bs, rs):
                        fn(x, w, b, r)
                if args.smoke:
                    s = time.perf_counter()
                    body()
                    us = (time.perf_counter() - s) * 1e6 / layers
                else:
                    us = graph_ms(body, device, REPLAYS, warmup_runs=2, warmup_replays=1) * 1e3 / layers
            except Exception as e:  # noqa: BLE001 - a form this torch refuses; the others still run
                entry["variant"][label] = {"error": f"{type(e).__name__}: {str(e)[:160]}"}
                continue
            entry["variant"][label] = {"us": round(us, 2), "tflop_s": round(flops / (us * 1e-6) / 1e12, 1),
                                       "rel_error": err}
        print(name, json.dumps(entry["variant"]), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "tower_gemm_probe.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
