"""The one-launch rotary + KV-write kernel (``engine/kernels/rope_store.py``) against the static backend's torch
form (``decoder_ops.rope_and_store``): the same rotated queries, and the same keys and values at the same
slots, every other slot untouched.

Needs Triton (CI has none: skipped there); without a GPU it runs through Triton's interpreter (``TRITON_INTERPRET=1``,
set by ``test/conftest.py``) in float32. The engine runs it wherever it runs the decode-attention kernel
(``test_decode_attention.py`` covers the engine end to end)."""
import pytest
import torch

from lionfs_ros.engine.decoder_ops import rope_and_store as torch_rope_and_store

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
triton = pytest.importorskip("triton")
from lionfs_ros.engine.kernels.rope_store import rope_and_store  # noqa: E402


@pytest.mark.parametrize("hq,hkv,hd", [(4, 2, 16), (6, 6, 24)])  # grouped and plain heads; a half not a power of 2
def test_kernel_matches_torch_rope_and_store(hq, hkv, hd):
    gen = torch.Generator().manual_seed(3)
    m, cap = 5, 40
    qkv = torch.randn(m, (hq + 2 * hkv) * hd, generator=gen)
    angles = torch.rand(1, m, hd // 2, generator=gen) * 6.0
    cos, sin = angles.cos().repeat(1, 1, 2), angles.sin().repeat(1, 1, 2)  # [1, M, D]: HF's layout
    slots = torch.tensor([7, 8, 9, 30, 31])
    bufs = torch.randn(2, hkv, cap, hd, generator=gen)
    want_k, want_v = bufs[0].clone(), bufs[1].clone()
    want_q = torch_rope_and_store(qkv, cos, sin, want_k, want_v, slots, (hq, hkv, hd))  # [Hq, M, D]
    dev = [t.to(DEVICE) for t in (qkv, cos, sin, bufs[0], bufs[1], slots)]
    got_q = rope_and_store(*dev, (hq, hkv, hd))  # [M, Hq, D]
    torch.testing.assert_close(got_q.cpu(), want_q.transpose(0, 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(dev[3].cpu(), want_k, atol=1e-6, rtol=0)
    torch.testing.assert_close(dev[4].cpu(), want_v, atol=0, rtol=0)


def test_kernel_refuses_a_wrong_width():
    qkv = torch.randn(2, 100)
    cos = sin = torch.ones(1, 2, 16)
    buf = torch.zeros(2, 8, 16)
    with pytest.raises(ValueError, match="heads"):
        rope_and_store(qkv, cos, sin, buf, buf.clone(), torch.tensor([0, 1]), (4, 2, 16))
