"""The batched LLM step across streams: frames of several streams due in one round are decided in ONE step
over a KV pool (rows of different lengths, padded to a bucket, each with its own KV budget), and each
stream decides as it would alone."""
import pytest
import torch

from engine_parts import build_model, engine_config, stream_frames
from lionfs_ros.engine import StreamEngine, StreamGroup
from lionfs_ros.engine.batched_step import BUCKETS, bucket_for
from lionfs_ros.engine.config import EngineConfigError
from lionfs_ros.engine.types import FrameError

CAMERA_FPS = 8.0
ROUNDS = 24
# Five streams (rounds of 5 pad to 8, rounds of 3 to 4), joining at different rounds (contexts of different
# lengths); "tight" has a KV budget small enough to evict several times; "asks" gets a question (a text piece
# and an answer: its next frame feeds alone, then it joins the batch again).
STREAMS = {
    "head": dict(joins=0, cfg=dict(threshold=0.7)),
    "tight": dict(joins=0, cfg=dict(threshold=0.7, kv_budget_tokens=200, evict_chunk_tokens=40, keep_recent_frames=4)),
    "asks": dict(joins=2, cfg=dict(threshold=0.7, max_new_tokens=3)),
    "left": dict(joins=5, cfg=dict(threshold=0.6)),
    "right": dict(joins=9, cfg=dict(threshold=0.8)),
}
QUESTION = ("what is in my hand?", 1.0)


def _config(name, backend="auto", compile=False):
    return engine_config(general_fps=CAMERA_FPS, backend=backend, compile=compile, **STREAMS[name]["cfg"])


def _frames(name):
    return stream_frames(ROUNDS, seed=20 + list(STREAMS).index(name))


def _alone(model, name, backend):
    engine = StreamEngine(model, _config(name, backend))
    if name == "asks":
        engine.ask(*QUESTION, query_id="q")
    frames, joins = _frames(name), STREAMS[name]["joins"]
    out = [engine.process_frame(frames[k], (k - joins) / CAMERA_FPS) for k in range(joins, ROUNDS)]
    engine.flush()
    return out, engine.stats()


def _grouped(model, compile=False, pipelined=False):
    """Every stream's decisions in one group, round by round (``process_round``) or ``pipelined`` (``process_rounds``)."""
    group = StreamGroup(model, {name: _config(name, compile=compile) for name in STREAMS})
    group["asks"].ask(*QUESTION, query_id="q")
    frames = {name: _frames(name) for name in STREAMS}
    got = {name: [] for name in STREAMS}
    rounds = ({name: (frames[name][k], (k - s["joins"]) / CAMERA_FPS, None)
               for name, s in STREAMS.items() if k >= s["joins"]} for k in range(ROUNDS))
    for decisions in group.process_rounds(rounds) if pipelined else map(group.process_round, rounds):
        for name, decision in decisions.items():
            got[name].append(decision)
    group.flush()
    return group, got


def _assert_same(got, alone, atol):
    assert len(got) == len(alone) and all(d is not None for d in got + alone)
    assert [(d.frame_index, d.respond, d.next_token, d.action) for d in got] == \
        [(d.frame_index, d.respond, d.next_token, d.action) for d in alone]
    torch.testing.assert_close(torch.tensor([d.p_interval for d in got]), torch.tensor([d.p_interval for d in alone]),
                               atol=atol, rtol=0)


def test_bucket_sizes():
    assert [bucket_for(n) for n in (1, 2, 3, 4, 5, 8, 9, 16)] == [1, 2, 4, 4, 8, 8, 16, 16] and BUCKETS[-1] == 16


def test_batched_llm_step_decides_as_each_stream_alone_on_cpu(fused_model):
    """On the CPU (no graphs): the same batched step as on CUDA, against each stream alone on both backends."""
    group, got = _grouped(fused_model)
    stats = group.stats()
    assert group.batched is not None and stats["llm_batches"] >= ROUNDS - 2
    assert stats["llm_batched_frames"] > 2 * ROUNDS  # most frames (not the first, nor those after an answer) were batched
    assert all(group[name].backend.name == "static-pooled" for name in STREAMS)
    # what a graphed tower of the stream would need (on CUDA), set as on a stream's own static backend
    assert all(group[name].backend.tower_attention == "triton" and group[name].backend.towers() == (None, None)
               for name in STREAMS)
    assert stats["streams"]["tight"]["compactions"] >= 2  # its own KV budget evicted inside the pool
    assert stats["streams"]["asks"]["questions"] == 1 and stats["streams"]["asks"]["answers"] >= 1
    lengths = {stats["streams"][name]["kv_tokens"] for name in STREAMS}
    assert len(lengths) >= 4  # the rows held contexts of different lengths
    for backend in ("dynamic", "static"):
        for name in STREAMS:
            alone, alone_stats = _alone(fused_model, name, backend)
            _assert_same(got[name], alone, atol=1e-4)
            assert stats["streams"][name]["kv_tokens"] == alone_stats["kv_tokens"], (name, backend)
            assert stats["streams"][name]["compactions"] == alone_stats["compactions"], (name, backend)


def test_pipelined_rounds_decide_as_round_by_round_on_cpu(fused_model):
    """``process_rounds`` (the next rounds' towers queued while a round's LLM step runs) gives each stream the
    decisions ``process_round`` gives, in the same order; a bad frame raises in its own round, after the others."""
    _, by_round = _grouped(fused_model)
    _, pipelined = _grouped(fused_model, pipelined=True)
    for name in STREAMS:
        assert [(d.frame_index, d.respond, d.next_token, d.action, d.p_interval) for d in pipelined[name]] == \
            [(d.frame_index, d.respond, d.next_token, d.action, d.p_interval) for d in by_round[name]], name
    group = StreamGroup(fused_model, {name: _config(name) for name in ("head", "left")})
    frames = stream_frames(4, seed=3)
    times = [0.0, 0.5, 1.0, 0.25]  # the 4th round goes back in time: refused
    done = []
    with pytest.raises(FrameError):
        for decisions in group.process_rounds({name: (frames[k], t, None) for name in ("head", "left")}
                                              for k, t in enumerate(times)):
            done.append(decisions)
    assert len(done) == 3 and all(d is not None for round_ in done for d in round_.values())


def test_group_without_batched_llm_runs_each_step_alone(fused_model):
    group = StreamGroup(fused_model, {name: _config(name) for name in ("head", "left")}, batch_llm=False)
    frames = stream_frames(4, seed=3)
    for k in range(4):
        group.process_round({name: (frames[k], k / CAMERA_FPS, None) for name in ("head", "left")})
    assert group.batched is None and group.stats()["llm_batches"] == 0 and group["head"].stats()["decided"] == 4


def test_group_streams_must_agree_on_weights(fused_model):
    """One decoder serves every stream of a group: a stream asking for other weights is refused at build."""
    configs = {"head": _config("head"), "left": engine_config(general_fps=CAMERA_FPS, compile=False, weights="fp8")}
    with pytest.raises(EngineConfigError, match="weights must agree"):
        StreamGroup(fused_model, configs)


def test_group_streams_must_agree_on_attention(fused_model):
    """One decoder serves every stream of a group: one attention kind for all, checked at build."""
    configs = {"head": _config("head"), "left": engine_config(general_fps=CAMERA_FPS, compile=False, attention="split")}
    with pytest.raises(EngineConfigError, match="attention must agree"):
        StreamGroup(fused_model, configs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (the CPU test runs the same step)")
@pytest.mark.parametrize("compile,pipelined", [(False, False), (False, True), (True, False)])
def test_batched_graphs_decide_as_each_stream_alone_on_cuda(tiny_parts_dir, tmp_path, compile, pipelined):
    """On a GPU: the graphed batched step (one graph per bucket) against each stream alone (graphed static, dynamic);
    with ``compile`` the batched graphs run the compiled elementwise ops, as the single stream's graphs do;
    ``pipelined``: the next rounds' towers run on the GPU while a round's LLM step does (``process_rounds``)."""
    from lionfs_ros.engine.decoder_ops import compile_problem
    from lionfs_ros.model import LionFSModel

    build_model(tiny_parts_dir, tmp_path)
    model = LionFSModel.from_pretrained(tmp_path, device="cuda", dtype=torch.float32).eval()
    group, got = _grouped(model, compile, pipelined)
    fused = group.batched.fused
    assert fused.compiled == (compile and compile_problem() is None), fused.compile_fallback
    assert sorted(group.batched._ops) == ([1, 2, 4, 8] if fused.compiled else [])  # a compiled set per bucket
    assert sorted({b for b, _ in group.batched._graphs}) == [1, 2, 4, 8]  # five streams: buckets up to 8, at build
    assert sorted(group._graphed["general"]._graphs) == [1, 2, 4, 8]  # the towers too, graphed per bucket at build
    assert group.stats()["llm_batched_frames"] > 2 * ROUNDS
    for backend in ("dynamic", "static"):
        for name in STREAMS:
            alone, _ = _alone(model, name, backend)
            _assert_same(got[name], alone, atol=1e-3)


def test_fp8_batched_step_with_norms_and_gate_in_the_codes_decides_as_each_stream_alone(fused_model, monkeypatch):
    """Weight-only FP8 with ``fold_norms`` (the norms' weights and the SiLU gate in the codes) through the batched step:
    each stream decides as it does alone on the static backend (CPU: the reference products; the engine refuses FP8
    off the GPU, so its device check is bypassed). Norms of weight other than 1, so folding them matters."""
    import copy

    from lionfs_ros.engine import backends, multi_stream

    monkeypatch.setattr(backends, "fp8_problem", lambda device: None)
    monkeypatch.setattr(multi_stream, "fp8_problem", lambda device: None)
    model = copy.deepcopy(fused_model)
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():
        decoder = model.llm.get_decoder()
        for norm in [n for layer in decoder.layers for n in (layer.input_layernorm, layer.post_attention_layernorm)
                     ] + [decoder.norm]:
            norm.weight.data = 1 + torch.randn(norm.weight.shape, generator=gen).to(norm.weight) / 4
    names = ("head", "left")
    configs = {name: engine_config(general_fps=CAMERA_FPS, compile=False, weights="fp8", threshold=0.7)
               for name in names}  # backend 'auto': FP8 picks the static backend wherever it runs
    group = StreamGroup(model, configs)
    assert group.batched.fused.layers[0].gate_up_weight.gated and group.batched.fused.head_weight.norm_in_codes
    frames = {name: _frames(name)[:12] for name in names}
    got = {name: [] for name in names}
    for k in range(12):
        for name, decision in group.process_round({n: (frames[n][k], k / CAMERA_FPS, None) for n in names}).items():
            got[name].append(decision)
    assert group.stats()["llm_batched_frames"] > 4
    for name in names:
        engine = StreamEngine(model, configs[name])
        assert engine.backend.name == "static" and engine.backend.fused.weights == "fp8"
        alone = [engine.process_frame(frames[name][k], k / CAMERA_FPS) for k in range(12)]
        _assert_same(got[name], alone, atol=1e-4)
