"""The Triton decode-attention kernel (``engine/kernels/decode_attention.py``) against the split path's arithmetic,
and the engine on it (with its decision kernel, ``kernels/stream_decision.py``): one stream (token-dropping tracks, eviction, a fork whose long prompt takes the split
path) and the batched step over a KV pool, each deciding as with ``attention='split'``.

Needs Triton (CI has none: skipped there). Without a GPU the kernel runs on CPU tensors through Triton's
interpreter (``TRITON_INTERPRET=1``, set by ``test/conftest.py``) in float32: the same arithmetic as the split
path but summed in another order, so outputs agree to ``ATOL`` (float32 rounding over a few hundred keys),
not bit for bit. On a GPU the same tests run on CUDA tensors (float32 products without TF32, and the engine
with CUDA graphs). The bf16 comparison at real sizes is ``scripts/gpu_decode_attention.sh``."""
import pytest
import torch

from engine_parts import build_model, engine_config, stream_frames
from lionfs_ros.engine import StreamEngine, StreamGroup
from lionfs_ros.engine import static_decoder
from lionfs_ros.engine.decoder_ops import masked_softmax
from lionfs_ros.engine.static_decoder import POSITION_SENTINEL

ATOL = 2e-5  # float32 kernel vs float32 split arithmetic (summation order only)
ENGINE_ATOL = 1e-5  # P(interval) of the engine on the kernel vs on split
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


triton = pytest.importorskip("triton")
from lionfs_ros.engine.kernels.decode_attention import MAX_ROWS, Tiles, decode_attention  # noqa: E402


@pytest.fixture(autouse=True)
def interpreter_on_cpu(monkeypatch):
    """Without a GPU: Triton's interpreter (test/conftest.py selects it before Triton is imported), and the engine
    is let pick the kernel on CPU tensors (it refuses without CUDA: ``attention_problem``)."""
    if DEVICE == "cpu":
        assert triton.knobs.runtime.interpret, "TRITON_INTERPRET=1 was not set before Triton was imported"
        monkeypatch.setattr(static_decoder, "attention_problem", lambda device: None)


@pytest.fixture(scope="module")
def model(request, tiny_parts_dir, tmp_path_factory):
    """The tiny LION-FS model (ego tower, router, token dropping): the session's on the CPU, on the GPU in float32."""
    if DEVICE == "cpu":
        return request.getfixturevalue("fused_model")
    from lionfs_ros.model import LionFSModel

    root = tmp_path_factory.mktemp("decode_attention_model")
    build_model(tiny_parts_dir, root)
    return LionFSModel.from_pretrained(root, device=DEVICE, dtype=torch.float32).eval()


HEADS = 2  # K/V heads of the pools below


def _pool(fills, m, heads=HEADS, cap=320, dim=24, seed=0):
    """K/V ``[N, heads, cap, dim]`` and slot positions ``[N, tracks, cap]`` for rows with ``fills [N][tracks]``
    slots held plus ``m`` new ones; track 0 holds positions with gaps (evicted), the others a sorted random
    subset (a dropping layer's kept tokens); slots past fill + m are empty. Returns (..., positions of the new)."""
    gen = torch.Generator().manual_seed(seed)
    n, tracks = len(fills), len(fills[0])
    keys, values = torch.randn(2, n, heads, cap, dim, generator=gen)
    slot_pos = torch.full((n, tracks, cap), POSITION_SENTINEL, dtype=torch.long)
    new = torch.empty(n, tracks, m, dtype=torch.long)
    for r, row in enumerate(fills):
        start = 3 * max(row) + 7  # the new tokens come after every held one
        for t, fill in enumerate(row):
            held = torch.randperm(start, generator=gen)[:fill].sort().values
            new[r, t] = start + torch.arange(m)
            slot_pos[r, t, :fill + m] = torch.cat([held, new[r, t]])
    return keys, values, slot_pos, torch.tensor(fills, dtype=torch.long), new


def _split_reference(q, keys, values, slot_pos, pos, rows, track, scale, span):
    """The split path's arithmetic (``static_decoder``/``batched_step``): additive float32 mask over ``span`` slots."""
    out = []
    for b, r in enumerate(rows.tolist()):
        groups = q.shape[2] // pos.shape[1]
        allowed = (slot_pos[r, track, None, :span] <= pos[b, :, None]).repeat(groups, 1)  # [g*M, span]
        mask = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
        probs = masked_softmax(q[b] @ keys[r, :, :span].transpose(1, 2), mask, scale)
        out.append(probs @ values[r, :, :span])
    return torch.stack(out)


def _stacked(q: torch.Tensor, m: int) -> torch.Tensor:
    """``[B, M, H_q, D]`` (head ``h * g + j``) -> ``[B, H_kv, g * M, D]`` (row ``j * M + i``): the split layout."""
    b, _, hq, d = q.shape
    groups = hq // HEADS
    return q.view(b, m, HEADS, groups, d).permute(0, 2, 3, 1, 4).reshape(b, HEADS, groups * m, d)


@pytest.mark.parametrize("m,groups,track,tiles", [
    (5, 3, 0, None), (1, 4, 2, None), (40, 3, 1, None),  # 120 rows: two query blocks
    (5, 3, 0, Tiles(block_q=16, keys_per_split=32, block_n=32, stages=2)),  # many small splits, one row block each
    (11, 4, 1, Tiles(block_q=16, keys_per_split=64, block_n=32, stages=1, warps=2)),  # 44 rows: three query blocks
])
def test_kernel_matches_split_arithmetic(m, groups, track, tiles):
    fills = [[250, 120, 60], [0, 0, 0], [17, 9, 3], [130, 64, 200], [0, 0, 0]]  # row 4: scratch (padding)
    keys, values, slot_pos, fill, new = _pool(fills, m)
    rows = torch.tensor([3, 0, 4, 2, 4])  # several rows, one twice, not in order
    pos = new[rows, track]  # [B, M]
    qkv = torch.randn(len(rows), m, HEADS * (groups + 2), keys.shape[-1])  # q/k/v as the product lays them out
    q = qkv[:, :, :HEADS * groups]  # [B, M, H_q, D], strided: read in place
    span = 256 if m < 10 else 320  # every row's fill + m fits (the longest: 255 and 290)
    dev = [t.to(DEVICE) for t in (q, keys, values, slot_pos, fill, pos, rows)]
    out = decode_attention(*dev, track, 0.3, span, tiles=tiles).cpu()
    assert out.shape == q.shape
    want = _split_reference(_stacked(q, m), keys, values, slot_pos, pos, rows, track, 0.3, span)
    torch.testing.assert_close(_stacked(out, m), want, atol=ATOL, rtol=0)


def test_kernel_refuses_a_long_feed():
    keys, values, slot_pos, fill, new = _pool([[10]], MAX_ROWS)
    q = torch.randn(1, MAX_ROWS, 2 * HEADS, 24)
    with pytest.raises(ValueError, match="stacked query rows"):
        decode_attention(q, keys, values, slot_pos, fill, new[:, 0], torch.tensor([0]), 0, 1.0)


def test_engine_on_the_kernel_decides_like_split(model):
    """LION-FS (ego tower, token dropping: each routed layer its own track) on the static backend, eviction and a
    question included; the thinking prompt and the question are long feeds (the split path inside a kernel run)."""
    frames = stream_frames(8, seed=31)
    step = 0.5 / model.config.ego.frames_per_frame
    results = {}
    for attention in ("split", "triton"):
        cfg = engine_config(backend="static", compile=False, threshold=0.7, kv_budget_tokens=300, evict_chunk_tokens=60,
                            keep_recent_frames=4, attention=attention)
        engine = StreamEngine(model, cfg)
        assert engine.backend.fused.attention == attention and engine.backend.fused.attention_fallback is None
        assert (engine.fast.decision_fallback is None) == (attention == "triton")  # the decision kernel with it
        engine.ask("what is this?", 0.0, query_id="q")
        decisions = [engine.process_frame(frames[k % 8], k * step) for k in range(round(24 * 0.5 / step))]
        engine.flush()
        results[attention] = ([d for d in decisions if d is not None], engine.stats())
    (split, split_stats), (kernel, kernel_stats) = results["split"], results["triton"]
    assert kernel_stats["compactions"] >= 1 and kernel_stats["answers"] >= 1
    assert [(d.frame_index, d.respond, d.next_token) for d in kernel] == [(d.frame_index, d.respond, d.next_token)
                                                                          for d in split]
    torch.testing.assert_close(torch.tensor([d.p_interval for d in kernel]), torch.tensor([d.p_interval for d in split]),
                               atol=ENGINE_ATOL, rtol=0)


def test_batched_step_on_the_kernel_decides_as_each_stream_alone(model):
    """Three pooled streams of different lengths (one joins late) in batched steps on the kernel (no gather copy)
    against each stream alone on split."""
    joins, rounds, fps = {"a": 0, "b": 0, "c": 3}, 8, 8.0
    frames = {name: stream_frames(rounds, seed=40 + i) for i, name in enumerate(joins)}

    def config(attention):
        return engine_config(general_fps=fps, backend="static", compile=False, threshold=0.7, attention=attention)

    group = StreamGroup(model, {name: config("triton") for name in joins})
    assert group.batched is not None and group.batched.fused.attention == "triton"
    got = {name: [] for name in joins}
    for k in range(rounds):
        due = {name: (frames[name][k], (k - j) / fps, None) for name, j in joins.items() if k >= j}
        for name, decision in group.process_round(due).items():
            got[name].append(decision)
    for name, j in joins.items():
        alone = StreamEngine(model, config("split"))
        want = [alone.process_frame(frames[name][k], (k - j) / fps) for k in range(j, rounds)]
        assert [(d.frame_index, d.respond, d.next_token) for d in got[name]] == \
            [(d.frame_index, d.respond, d.next_token) for d in want]
        torch.testing.assert_close(torch.tensor([d.p_interval for d in got[name]]),
                                   torch.tensor([d.p_interval for d in want]), atol=ENGINE_ATOL, rtol=0)
    # A frame right after a decided frame that did not respond is a plain piece: it joins the batched step.
    # (How many there are depends on the decisions, which differ between devices: count them, do not fix them.)
    plain = sum(1 for ds in got.values() for before, d in zip(ds, ds[1:]) if d is not None and not before.respond)
    assert plain >= 1 and group.stats()["llm_batched_frames"] >= plain
