"""The Triton routing kernels (``engine/kernels/token_routing.py``) against the torch routing (``engine/routing.py``):
the same kept tokens exactly (several frames, text between them, ties), the same gathered rows and slot writes,
the same stream after the layer and its next norm; and the engine deciding the same with the kernels and without.

Needs Triton (CI has none: skipped there). Without a GPU the kernels run on CPU tensors through Triton's
interpreter (``TRITON_INTERPRET=1``, set by ``test/conftest.py``) in float32; on a GPU the same tests run on CUDA
tensors (and the engine with CUDA graphs). The bf16 agreement at real sizes is ``scripts/gpu_route_kernel.sh``."""
import types

import pytest
import torch

from engine_parts import engine_config, stream_frames
from lionfs_ros.engine import StreamEngine
from lionfs_ros.engine import static_decoder
from lionfs_ros.engine.backends import StaticBackend
from lionfs_ros.engine.routing import drop_plan, kept_indices
from lionfs_ros.engine.decoder_ops import rms_norm
from lionfs_ros.engine.static_decoder import POSITION_SENTINEL, FusedDecoder
from lionfs_ros.model.token_dropping import TokenDroppingRouter, frame_top

NORM_ATOL = 1e-5  # the next norm: float32, another summation order
BF16_TOL = 1e-2  # the next norm in bf16: a rounding apart at most (2^-8 relative)
ENGINE_ATOL = 1e-5  # P(interval) of the engine with the kernels vs without
DECIDED = 8  # decided frames the engine test feeds
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

triton = pytest.importorskip("triton")
from lionfs_ros.engine.kernels.token_routing import MAX_ROWS, merge, route  # noqa: E402


@pytest.fixture(autouse=True)
def interpreter_on_cpu(monkeypatch):
    """Without a GPU: Triton's interpreter, and the engine is let pick Triton on CPU tensors (``attention_problem``)."""
    if DEVICE == "cpu":
        assert triton.knobs.runtime.interpret, "TRITON_INTERPRET=1 was not set before Triton was imported"
        monkeypatch.setattr(static_decoder, "attention_problem", lambda device: None)


def _feed(n=8, keep=3, hidden=80, rot=12, seed=0):
    """A feed ``text, frame, text, frame, frame, text`` of ``n``-token frames with ties: frame 0 random, frame 1 all
    one row (its first ``keep`` win), frame 2 rows in equal pairs (the keep boundary splits a pair)."""
    gen = torch.Generator().manual_seed(seed)
    visual = [False] * 2 + [True] * n + [False] + [True] * 2 * n + [False] * 3
    frames = [i for i, v in enumerate(visual) if v]
    residual = torch.randn(len(visual), hidden, generator=gen)
    residual[frames[n:2 * n]] = residual[frames[n]].clone()
    for a in range(2 * n, 3 * n, 2):
        residual[frames[a + 1]] = residual[frames[a]].clone()
    torch.manual_seed(seed)
    router = TokenDroppingRouter(hidden, init_std=0.5)
    with torch.no_grad():
        router.norm.weight.normal_(1.0, 0.1, generator=gen)
        router.proj.bias.fill_(0.25)
    m = len(visual)
    h = torch.randn(m, hidden, generator=gen)
    cos, sin = torch.randn(2, 1, m, rot, generator=gen)
    pos = 100 + torch.arange(m) * 2
    return visual, residual, router, h, pos, cos, sin


def test_frame_top_breaks_ties_by_index():
    scores = torch.tensor([[1.0, 3.0, 2.0, 3.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], device=DEVICE)
    assert frame_top(scores, 4).sort(-1).values.tolist() == [[1, 2, 3, 4], [0, 1, 2, 3]]
    if DEVICE == "cuda":  # the rule is the set CUDA's topk keeps
        gen = torch.Generator().manual_seed(3)
        many = torch.randint(0, 4, (64, 37), generator=gen).float().to(DEVICE)
        for keep in (1, 5, 18, 36):
            want = many.topk(keep, dim=-1).indices.sort(-1).values
            assert torch.equal(frame_top(many, keep).sort(-1).values, want)


@pytest.mark.parametrize("dtype", [torch.float32] + ([torch.bfloat16] if DEVICE == "cuda" else []))
@pytest.mark.parametrize("seed", [0, 1])
def test_route_and_merge_match_torch(dtype, seed):
    n, keep, track = 8, 3, 1
    visual, residual, router, h, pos, cos, sin = _feed(n, keep, seed=seed)
    router = router.to(DEVICE, dtype)
    residual, h, cos, sin = (t.to(DEVICE, dtype) for t in (residual, h, cos, sin))
    pos = pos.to(DEVICE)
    plan = drop_plan(visual, n, keep, [False, True, True], torch.device(DEVICE))
    fill = torch.tensor([30, 9, 4], device=DEVICE)
    slot_pos = torch.full((3, 64), POSITION_SENTINEL, dtype=torch.long, device=DEVICE)
    before = slot_pos.clone()
    with torch.no_grad():
        want = kept_indices(router, residual[None], plan, keep)[0]
        sel, dest_of, h_k, res_k, pos_k, cos_k, sin_k, slots = route(
            residual, h, pos, cos, sin, plan.frame_of, keep, plan.kept, router, slot_pos, fill, track)
    assert want.tolist() == sel.tolist()
    frames = plan.frames.cpu()
    assert sel.cpu()[torch.isin(sel.cpu(), frames[1])].tolist() == frames[1, :keep].tolist()  # all tie: the first
    assert torch.equal(h_k, h[sel]) and torch.equal(res_k, residual[sel]) and torch.equal(pos_k, pos[sel])
    assert torch.equal(cos_k, cos[:, sel]) and torch.equal(sin_k, sin[:, sel])
    assert torch.equal(slots, fill[track] + torch.arange(plan.kept, device=DEVICE))
    before[track, slots] = pos[sel]
    assert torch.equal(slot_pos, before)  # the kept tokens' positions at the track's next slots, nothing else
    assert dest_of.tolist() == [sel.tolist().index(i) if i in sel.tolist() else -1 for i in range(len(visual))]

    mlp = torch.randn(res_k.shape, generator=torch.Generator().manual_seed(seed + 9)).to(DEVICE, dtype)
    weight = torch.linspace(0.5, 1.5, residual.shape[1]).to(DEVICE, dtype)
    stream = residual.index_copy(0, sel, res_k + mlp)
    for rows in (len(visual), 1):
        got_stream, got_h = merge(residual, res_k, mlp, dest_of, weight, 1e-5, rows)
        assert torch.equal(got_stream, stream)
        tol = dict(atol=NORM_ATOL, rtol=0) if dtype == torch.float32 else dict(atol=BF16_TOL, rtol=BF16_TOL)
        torch.testing.assert_close(got_h, rms_norm(stream[-rows:], weight, 1e-5), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_route_computes_the_layer_norm_with_the_logits_as_given(dtype):
    """Where the layer's input norm is not computed yet (the norm folded into the products), the logits' launch
    computes it: the same kept rows, slots and gathers as when it is given."""
    visual, residual, router, _, pos, cos, sin = _feed(seed=4)
    residual, cos, sin = (t.to(DEVICE, dtype) for t in (residual, cos, sin))
    router = router.to(DEVICE, dtype)
    weight = (1 + torch.randn(residual.shape[1], generator=torch.Generator().manual_seed(9)) / 10).to(DEVICE, dtype)
    plan = drop_plan(visual, 8, 3, [False, True], torch.device(DEVICE))
    args = (pos.to(DEVICE), cos, sin, plan.frame_of, 3, plan.kept, router)

    def run(h, layer_norm):
        slot_pos = torch.full((2, 64), POSITION_SENTINEL, dtype=torch.long, device=DEVICE)
        out = route(residual, h, *args, slot_pos, torch.zeros(2, dtype=torch.long, device=DEVICE), 1,
                    layer_norm=layer_norm)
        return out, slot_pos

    (given, sp_given), (made, sp_made) = run(rms_norm(residual, weight, 1e-5), None), run(None, (weight, 1e-5))
    for name, a, b in zip(("sel", "dest_of", "h", "residual", "pos", "cos", "sin", "slots"), given, made):
        if name == "h":  # another summation order for the statistics: a rounding apart at most
            tol = dict(atol=NORM_ATOL, rtol=0) if dtype == torch.float32 else dict(atol=BF16_TOL, rtol=BF16_TOL)
            torch.testing.assert_close(b, a, **tol)
        else:
            assert torch.equal(a, b), name
    assert torch.equal(sp_given, sp_made)
    with pytest.raises(ValueError, match="not both"):
        run(rms_norm(residual, weight, 1e-5), (weight, 1e-5))


def test_route_refuses_a_long_feed():
    visual = [True] * (MAX_ROWS + 8)
    residual = torch.randn(len(visual), 16)
    plan = drop_plan(visual, 8, 4, [False, True], torch.device("cpu"))
    rot, router = residual[None, :, :4], TokenDroppingRouter(16, 0.1)
    with pytest.raises(ValueError, match="route kernel takes"):
        route(residual, residual, torch.arange(len(visual)), rot, rot, plan.frame_of, 4, plan.kept, router,
              torch.zeros(2, 128, dtype=torch.long), torch.zeros(2, dtype=torch.long), 1)


def test_engine_decides_the_same_with_the_routing_kernels(fused_model, tiny_parts_dir, tmp_path_factory):
    """LION-FS (ego tower, dropping layers with their own tracks) on the static backend, attention on Triton, with the
    routing kernels and with torch's routing: the same decisions (feeds of more than ``MAX_ROWS`` rows, such as the
    question's prompt, route in torch on both)."""
    model = fused_model
    if DEVICE == "cuda":
        from engine_parts import build_model
        from lionfs_ros.model import LionFSModel

        root = tmp_path_factory.mktemp("token_routing_model")
        build_model(tiny_parts_dir, root)
        model = LionFSModel.from_pretrained(root, device=DEVICE, dtype=torch.float32).eval()
    frames = stream_frames(8, seed=33)
    step = 0.5 / model.config.ego.frames_per_frame
    results = {}
    for routing in ("torch", "auto"):
        cfg = engine_config(backend="static", compile=False, threshold=0.7, attention="triton")
        fused = FusedDecoder(model.llm, attention="triton", dropping=model.token_dropping, routing=routing)
        assert (fused.route_kernels is not None) == (routing == "auto")
        if fused.route_kernels is not None:  # count the kernel's runs
            calls = []
            fused.route_kernels = types.SimpleNamespace(
                MAX_ROWS=MAX_ROWS, merge=merge,
                route=lambda *args, **kw: calls.append(args[0].shape[0]) or route(*args, **kw))
        engine = StreamEngine(model, cfg, backend=StaticBackend(model, cfg, fused=fused))
        engine.ask("what is this?", 0.0, query_id="q")
        decisions = [engine.process_frame(frames[k % 8], k * step) for k in range(round(DECIDED * 0.5 / step))]
        engine.flush()
        results[routing] = ([d for d in decisions if d is not None], engine.stats())
    (plain, _), (kernel, kernel_stats) = results["torch"], results["auto"]
    assert kernel_stats["answers"] >= 1 and len(kernel) == len(plain) == DECIDED
    # every decided frame routed in the kernels (on a GPU: the captured graph holds them, captured once)
    assert len(calls) >= (DECIDED if DEVICE == "cpu" else 1) * len(model.token_dropping.layers)
    assert [(d.frame_index, d.respond, d.next_token) for d in kernel] == [(d.frame_index, d.respond, d.next_token)
                                                                          for d in plain]
    p_kernel, p_plain = (torch.tensor([d.p_interval for d in ds]) for ds in (kernel, plain))
    torch.testing.assert_close(p_kernel, p_plain, atol=ENGINE_ATOL, rtol=0)
