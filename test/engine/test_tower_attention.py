"""The vision towers' Triton attention kernel (``engine/kernels/tower_attention.py``) against a float64 reference,
and the fused tower on it against the fused tower on SDPA.

Needs Triton (CI has none: skipped there). Without a GPU the kernel runs on CPU tensors through Triton's interpreter
(``TRITON_INTERPRET=1``, set by ``test/conftest.py``), in float32 and float16 (the interpreter truncates float32 to
bf16 instead of rounding it: bf16 is compared on a GPU only); the fused tower is let pick the kernel on CPU tensors
(``tower_attention_problem`` refuses without CUDA) by patching that check, as ``test_decode_attention.py`` does for the
LLM's kernel. The bf16 comparison at SigLIP-L's shape, and timings: ``scripts/tower_attention_bench.py``."""
import pytest
import torch

from lionfs_ros.engine import fused_tower
from lionfs_ros.engine.fused_tower import FusedTower, TowerAttentionError
from lionfs_ros.engine.graphed_frame import falling_back
from test_fused_tower import CLIP, FP32_ATOL, SIGLIP, encoder

triton = pytest.importorskip("triton")
from lionfs_ros.engine.kernels.tower_attention import Tiles, tower_attention  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ATOL = {torch.float32: 5e-6, torch.float16: 2e-3}  # float32: summation order; float16: p and the output rounded
SCALE = 0.3


def _product(b: int, length: int, heads: int, dim: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """The q/k/v product ``[B*L, 3*H*D]`` viewed as ``[B, L, 3, H, D]``, as ``FusedTower`` hands it over."""
    gen = torch.Generator().manual_seed(seed)
    prod = torch.randn(b * length, 3 * heads * dim, generator=gen).to(DEVICE, dtype)
    return prod.view(b, length, 3, heads, dim)


def _reference(qkv: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale) v`` in float64 -> ``[B, L, H, D]``."""
    q, k, v = qkv.double().permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, L, D] each
    return (torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v).transpose(1, 2)


@pytest.fixture(autouse=True)
def interpreter_on_cpu():
    if DEVICE == "cpu":
        assert triton.knobs.runtime.interpret, "TRITON_INTERPRET=1 was not set before Triton was imported"


@pytest.mark.parametrize("length,dim,tiles", [
    (37, 16, None),  # default tiles: one block of 64 queries and of 64 keys, both past L
    (69, 16, Tiles(block_m=32, block_n=16)),  # L a multiple of neither block: tail queries and tail keys
    (69, 64, Tiles(block_m=16, block_n=64, warps=2)),  # 5 query blocks, the second key block mostly past L
    (37, 64, Tiles(block_m=128, block_n=128, warps=8)),  # blocks larger than L
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kernel_matches_float64_softmax(length, dim, tiles, dtype):
    qkv = _product(2, length, 3, dim, dtype)
    out = tower_attention(qkv, SCALE, tiles)
    assert out.shape == (2, length, 3, dim) and out.dtype == dtype and out.is_contiguous()
    want = _reference(qkv, SCALE)
    torch.testing.assert_close(out.double().cpu(), want.cpu(), atol=ATOL[dtype], rtol=0)


def test_kernel_refuses_a_layout_it_cannot_read():
    qkv = _product(1, 37, 3, 16, torch.float32)
    with pytest.raises(ValueError, match=r"\[B, L, 3, H, D\]"):
        tower_attention(qkv[:, :, :2], SCALE)


@pytest.fixture
def kernel_anywhere(monkeypatch):
    """The fused tower may pick the kernel on CPU tensors (the interpreter runs it)."""
    monkeypatch.setattr(fused_tower, "tower_attention_problem", lambda device: None)


def _counting(tower: FusedTower) -> list:
    """Wraps ``tower``'s kernel: the returned list grows by one per kernel call."""
    calls, kernel = [], tower.kernel

    def counted(*args, **kwargs):
        calls.append(1)
        return kernel(*args, **kwargs)
    tower.kernel = counted
    return calls


@pytest.mark.parametrize("config, global_token", [(SIGLIP, "pooler"), (CLIP, "cls")])
def test_fused_tower_on_the_kernel_gives_the_sdpa_tokens(config, global_token, kernel_anywhere):
    enc = encoder(config, global_token).to(DEVICE)
    pixels = torch.randn(2, 3, 32, 32).to(DEVICE)
    sdpa, kernel = FusedTower(enc, attention="sdpa"), FusedTower(enc, attention="triton")
    assert (sdpa.attention_run, kernel.attention_run, kernel.attention_fallback) == ("sdpa", "triton", None)
    calls = _counting(kernel)
    got, want = kernel(pixels), sdpa(pixels)
    assert len(calls) == config["num_hidden_layers"]
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=FP32_ATOL, rtol=0)


def test_fused_tower_without_cuda_runs_sdpa():
    tower = FusedTower(encoder(SIGLIP, "pooler"), attention="triton")
    assert tower.attention_run == "sdpa" and "no CUDA device" in tower.attention_fallback
    with pytest.raises(ValueError, match="attention"):
        FusedTower(encoder(SIGLIP, "pooler"), attention="flash")


def test_a_failing_kernel_falls_back_to_sdpa(kernel_anywhere, monkeypatch):
    """The kernel raising at the first run (as ``GraphedTower`` and ``capture_tower`` warm a tower up): SDPA runs,
    the reason is kept."""
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)  # no GPU to wait for here
    enc = encoder(CLIP, "cls").to(DEVICE)
    pixels = torch.randn(1, 3, 32, 32).to(DEVICE)
    tower = FusedTower(enc, attention="triton")

    def broken(*args, **kwargs):
        raise RuntimeError("out of resources: shared memory")
    tower.kernel = broken
    with pytest.raises(TowerAttentionError, match="shared memory"):
        tower(pixels)
    got = falling_back(tower, lambda: tower(pixels))
    assert tower.attention_run == "sdpa" and "shared memory" in tower.attention_fallback
    torch.testing.assert_close(got, FusedTower(enc, attention="sdpa")(pixels), atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 on a GPU (the interpreter truncates float32 to bf16)")
def test_kernel_matches_sdpa_at_siglip_l_shape():
    """SigLIP-L/16-384's attention (576 tokens, 16 heads of 64) in bf16, default tiles: as close to float64 as SDPA."""
    qkv = _product(1, 576, 16, 64, torch.bfloat16)
    scale = 64 ** -0.5
    out = tower_attention(qkv, scale)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2)
    want = _reference(qkv, scale)
    sdpa_error = (sdpa.double() - want).abs().max().item()
    assert (out.double() - want).abs().max().item() <= max(2 * sdpa_error, 4e-3)
    torch.testing.assert_close(out.float(), sdpa.float(), atol=1e-2, rtol=0)
