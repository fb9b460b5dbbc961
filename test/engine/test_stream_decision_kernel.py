"""The decision kernel (``engine/kernels/stream_decision.py``) against the model's rule (``stream_decision``): the
same P(interval), the same most likely token (ties to the lowest id) and the same speak-or-stay-silent answer, on
rows of one and of several program blocks, in float32 and bf16, and the engine's fallback where it cannot run.

Needs Triton (CI has none: skipped there). Without a GPU the kernel runs through Triton's interpreter
(``TRITON_INTERPRET=1``, set by ``test/conftest.py``)."""
import pytest
import torch

from lionfs_ros.model.modeling_lionfs import stream_decision

triton = pytest.importorskip("triton")
from lionfs_ros.engine.kernels.stream_decision import BLOCK, stream_decision_row  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
P_RTOL = 1e-5  # P(interval): the same formula summed in another order


def reference(logits: torch.Tensor, interval: int, threshold: float) -> tuple[float, bool, int]:
    p, respond, top = stream_decision(logits, interval, threshold)
    return float(p), bool(respond), int(top)


@pytest.mark.parametrize("vocab", [37, BLOCK, 2 * BLOCK + 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_decides_as_the_rule(vocab, dtype):
    gen = torch.Generator().manual_seed(vocab)
    for case in range(6):
        logits = (torch.randn(vocab, generator=gen) * 3).to(dtype)
        interval = int(torch.randint(vocab, (1,), generator=gen))
        if case % 2:  # the interval token the most likely one: the threshold decides
            logits[interval] = logits.float().max() + 2.0
        threshold = (0.2, 0.5, 0.9)[case % 3]
        p, respond, top = stream_decision_row(logits.to(DEVICE), interval, threshold).tolist()
        want_p, want_respond, want_top = reference(logits, interval, threshold)
        assert p == pytest.approx(want_p, rel=P_RTOL, abs=1e-12)
        assert (bool(respond), int(top)) == (want_respond, want_top)


def test_a_kept_workspace_gives_each_call_its_own_decision():
    """The engine keeps the buffers between calls: every call still decides on its own logits."""
    gen = torch.Generator().manual_seed(5)
    workspace = {}
    for case in range(4):
        logits = torch.randn(BLOCK + 9, generator=gen) * (1 + case)
        got = stream_decision_row(logits.to(DEVICE), 3, 0.5, workspace).tolist()
        want_p, want_respond, want_top = reference(logits, 3, 0.5)
        assert got[0] == pytest.approx(want_p, rel=P_RTOL, abs=1e-12)
        assert (bool(got[1]), int(got[2])) == (want_respond, want_top)
    assert len(workspace) == 1


def test_ties_go_to_the_lowest_token_across_blocks():
    logits = torch.zeros(3 * BLOCK + 1)
    logits[[BLOCK + 3, 2 * BLOCK + 1, 5]] = 4.0  # the same max in three blocks
    p, respond, top = stream_decision_row(logits.to(DEVICE), 5, 0.5).tolist()
    want_p, want_respond, want_top = reference(logits, 5, 0.5)
    assert int(top) == want_top == 5
    assert p == pytest.approx(want_p, rel=P_RTOL)
    assert bool(respond) == want_respond


def test_bad_rows_are_refused():
    with pytest.raises(ValueError, match="one contiguous row"):
        stream_decision_row(torch.zeros(2, 8, device=DEVICE), 0, 0.5)
    with pytest.raises(ValueError, match="interval id"):
        stream_decision_row(torch.zeros(8, device=DEVICE), 8, 0.5)


def test_the_engine_decides_with_the_kernel_and_falls_back_to_the_rule(fused_model, monkeypatch, caplog):
    """The engine on the kernel (let run on CPU tensors here: ``attention_problem`` patched) decides each frame as on
    the model's rule; a kernel that fails hands over to the rule for good, logged once, and no frame is lost."""
    from engine_parts import engine_config, stream_frames
    from lionfs_ros.engine import StreamEngine, static_decoder
    from lionfs_ros.engine.kernels import stream_decision as kernel_module

    frames = stream_frames(6, seed=3)
    step = 0.5 / fused_model.config.ego.frames_per_frame

    def decisions(engine):
        out = [engine.process_frame(frames[k % 6], k * step) for k in range(round(4 * 0.5 / step))]
        return [(d.frame_index, d.respond, d.next_token, pytest.approx(d.p_interval, rel=P_RTOL))
                for d in out if d is not None]

    rule = StreamEngine(fused_model, engine_config(answers=False, threshold=0.7))
    assert rule.fast.decision_fallback is not None  # no CUDA: the rule
    monkeypatch.setattr(static_decoder, "attention_problem", lambda device: None)
    kernel = StreamEngine(fused_model, engine_config(answers=False, threshold=0.7))
    assert kernel.fast.decision_fallback is None
    want = decisions(rule)
    assert decisions(kernel) == want and want
    assert kernel.fast.decision_fallback is None  # every frame went through the kernel

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image for this GPU")
    monkeypatch.setattr(kernel_module, "stream_decision_row", broken)
    failing = StreamEngine(fused_model, engine_config(answers=False, threshold=0.7))
    with caplog.at_level("WARNING"):
        assert decisions(failing) == want
    assert "no kernel image" in failing.fast.decision_fallback
    assert sum("the model's rule decides from now on" in r.getMessage() for r in caplog.records) == 1
