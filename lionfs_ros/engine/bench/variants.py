"""The engine variants ``lionfs bench`` measures, by name: each is a set of ``EngineConfig`` fields (and whether the
model's token dropping stays on). Suffixes: ``+cublas`` every bf16 product by cuBLAS (``linear_kernel='torch'``),
``+nodrop`` the dropping routers off, ``+fp8`` weight-only FP8 decoder weights, ``+pdl`` the engine's kernels
launched with programmatic dependent launch, ``+nofold`` the residual add and RMSNorm as kernels of their own between
the products (``fold_norms=False``), ``+bf16head`` (with ``+fp8``) the output head left in bf16
(``fp8_head=False``)."""
from __future__ import annotations

VARIANTS = {  # name -> EngineConfig fields (and "dropping": False to switch the routers off)
    "eager": {"compile": False, "attention": "sdpa"},
    "dynamic": {"compile": False, "attention": "sdpa", "backend": "dynamic"},
    "graphs": {"compile": False, "attention": "sdpa"},
    "graphs+compile": {"compile": True, "attention": "sdpa"},
    "graphs+split": {"compile": False, "attention": "split"},
    "graphs+compile+split": {"compile": True, "attention": "split"},
    "graphs+triton": {"compile": False, "attention": "triton"},  # kernels/decode_attention.py (default attention)
    "graphs+compile+triton": {"compile": True, "attention": "triton"},
}
NODROP = "+nodrop"
PDL = "+pdl"
NOFOLD = "+nofold"
FP8 = "+fp8"
CUBLAS = "+cublas"
for _name in [n for n in VARIANTS if n.startswith("graphs")]:
    VARIANTS[_name + CUBLAS] = {**VARIANTS[_name], "linear_kernel": "torch"}  # every bf16 product by cuBLAS
for _name in [n for n in VARIANTS if n.startswith("graphs")]:
    VARIANTS[_name + PDL] = {**VARIANTS[_name], "dependent_launch": True}  # kernels/dependent_launch.py
for _name in [n for n in VARIANTS if n.startswith("graphs")]:
    VARIANTS[_name + NOFOLD] = {**VARIANTS[_name], "fold_norms": False}  # the add + norm between the products
for _name in list(VARIANTS):
    VARIANTS[_name + NODROP] = {**VARIANTS[_name], "dropping": False}
BF16_HEAD = "+bf16head"
for _name in [n for n in VARIANTS if not n.startswith(("eager", "dynamic"))]:
    VARIANTS[_name + FP8] = {**VARIANTS[_name], "weights": "fp8"}
    VARIANTS[_name + FP8 + BF16_HEAD] = {**VARIANTS[_name], "weights": "fp8", "fp8_head": False}


def variant_fields(name: str) -> tuple[dict, bool]:
    """(EngineConfig fields, dropping on) of a variant name."""
    fields = dict(VARIANTS[name])
    return fields, fields.pop("dropping", True)
