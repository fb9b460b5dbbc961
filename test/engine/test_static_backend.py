"""The static backend's math (preallocated KV, slot positions, fused projections, token dropping with
fixed shapes) equals the dynamic one and the full-sequence forward.

On the CPU it runs without CUDA graphs; the graphs replay exactly this code on a GPU.
"""
import numpy as np
import pytest
import torch

from engine_parts import build_model, engine_config, stream_frames
from lionfs_ros.engine import StreamEngine
from lionfs_ros.engine.backends import StaticBackend, static_backend_supported
from lionfs_ros.engine.lm_state import DynamicLMState

ATOL = 1e-4


MODELS = ["baseline_model", "fused_model"]  # VideoLLM-online's design; LION-FS (ego tower, router, dropping)


def feeds(model):
    fmt = model.formatter
    frames = stream_frames(5, seed=12)
    with torch.no_grad():
        ego = None
        if model.ego is not None:
            ego = model.preprocess(np.repeat(frames, model.config.ego.frames_per_frame, axis=0), "ego")
        embeds = model.embed_frames(model.preprocess(frames), ego)
    out = [(fmt.system_ids(), None), (fmt.stream_open_ids(), None)]
    out += [(fmt.frame_ids(after_frame=k > 0), embeds[k]) for k in range(3)]
    out += [(fmt.user_ids("what now?", after_stream=True), None), ([7], None), ([9], None)]
    out += [(fmt.stream_open_ids(), None)] + [(fmt.frame_ids(after_frame=k > 3), embeds[k]) for k in (3, 4)]
    return out


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("attention", ["sdpa", "split"])
def test_static_state_matches_dynamic_through_feeds_fork_and_eviction(request, name, attention):
    model = request.getfixturevalue(name)
    cfg = engine_config(backend="static", attention=attention)
    backend = StaticBackend(model, cfg, use_graphs=False)
    static, dynamic = backend.main_state(), DynamicLMState(model)
    for ids, embeds in feeds(model):
        torch.testing.assert_close(static.feed(ids, embeds), dynamic.feed(ids, embeds), atol=ATOL, rtol=0)
    assert static.num_tokens == dynamic.num_tokens == static.next_position

    fork, dyn_fork = static.fork(), dynamic.fork()
    assert fork is backend.slow and fork.in_use
    torch.testing.assert_close(fork.feed([11, 12]), dyn_fork.feed([11, 12]), atol=ATOL, rtol=0)
    with pytest.raises(RuntimeError, match="in use"):
        static.fork()
    fork.release()
    assert static.next_position == dynamic.next_position  # the main context did not see the fork's tokens

    keep = torch.ones(static.next_position, dtype=torch.bool)
    keep[30:52] = False  # two frames' worth from the middle
    for reindex in (True, False):
        s, d = backend.main_state(), dynamic
        if not reindex:  # start again from the same sequence
            s = StaticBackend(model, cfg, use_graphs=False).main_state()
            d = DynamicLMState(model)
            for ids, embeds in feeds(model):
                s.feed(ids, embeds), d.feed(ids, embeds)
        s.evict(keep, reindex), d.evict(keep, reindex)
        assert s.num_tokens == d.num_tokens and s.next_position == d.next_position
        torch.testing.assert_close(s.feed([5, 6, 7]), d.feed([5, 6, 7]), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name,attention", [("baseline_model", "sdpa"), ("baseline_model", "split"),
                                            ("fused_model", "split")])
def test_engine_on_the_static_backend_decides_like_the_dynamic_one(request, name, attention):
    model = request.getfixturevalue(name)
    frames = stream_frames(12, seed=13)
    step = 0.5 / (model.config.ego.frames_per_frame if model.ego is not None else 1)  # ego-only frames between
    results = {}
    for backend in ("dynamic", "static"):
        engine = StreamEngine(model, engine_config(backend=backend, threshold=0.7, kv_budget_tokens=300,
                                                   evict_chunk_tokens=60, keep_recent_frames=4, attention=attention))
        decisions = [engine.process_frame(frames[k % 12], k * step) for k in range(round(40 * 0.5 / step))]
        results[backend] = ([d for d in decisions if d is not None], engine.stats())
    (dyn, dyn_stats), (sta, sta_stats) = results["dynamic"], results["static"]
    assert len(sta) == len(dyn) == 40 and sta_stats["ego_frames"] == dyn_stats["ego_frames"]
    assert sta_stats["backend"] == "static" and sta_stats["compactions"] == dyn_stats["compactions"] > 0
    assert [d.respond for d in sta] == [d.respond for d in dyn] and any(d.respond for d in dyn)
    torch.testing.assert_close(torch.tensor([d.p_interval for d in sta]), torch.tensor([d.p_interval for d in dyn]),
                               atol=ATOL, rtol=0)
    assert sta_stats["answers"] == dyn_stats["answers"] > 0


def test_static_dropping_keeps_the_full_sequence_forwards_tokens(fused_model):
    """Fed piece by piece, the static state gives the logits of one full-sequence forward, and each dropping
    layer holds exactly the tokens that forward kept."""
    model = fused_model
    assert static_backend_supported(model) is None and model.token_dropping is not None
    backend = StaticBackend(model, engine_config(backend="static"), use_graphs=False)
    state, pieces = backend.main_state(), feeds(model)[:6]  # up to the question: one stream, no eviction
    lasts = [state.feed(ids, embeds) for ids, embeds in pieces]
    ids = [i for piece, _ in pieces for i in piece]
    frames = torch.stack([e for _, e in pieces if e is not None])
    with torch.no_grad():
        full = model.step_ids(ids, frames)
    ends = np.cumsum([len(piece) for piece, _ in pieces]) - 1
    torch.testing.assert_close(torch.stack(lasts), full.logits[0, ends], atol=ATOL, rtol=0)
    fused = backend.main.fused
    assert full.kept and sorted(full.kept) == model.token_dropping.layers
    for layer, kept in full.kept.items():
        track = fused.layers[layer].track
        held = state.slot_pos[track, :state.fills[track]]
        assert torch.equal(held, kept[0].nonzero().squeeze(-1)), f"layer {layer}"
        assert 0 < held.numel() < len(ids)


def test_device_preprocess_gives_the_models_pixels(fused_model):
    from lionfs_ros.model.image_processing import DeviceImageProcessor

    for encoder, source in ((fused_model.vision, "general"), (fused_model.ego, "ego")):
        prep = DeviceImageProcessor(encoder.processor, torch.device("cpu"))
        for rgb in stream_frames(2, seed=14, size=57):
            pixels = prep.normalize(prep.resize(rgb))
            assert torch.equal(pixels, fused_model.preprocess(rgb, source))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (the CPU tests above run the same code)")
def test_cuda_graphs_with_dropping_and_ego_decide_like_the_dynamic_backend(tiny_parts_dir, tmp_path):
    """On a GPU: the graphed towers and the graphed dropping step decide as the dynamic backend does."""
    from lionfs_ros.model import LionFSModel

    build_model(tiny_parts_dir, tmp_path)
    model = LionFSModel.from_pretrained(tmp_path, device="cuda", dtype=torch.float32).eval()
    frames = stream_frames(12, seed=15)
    results = {}
    for backend in ("dynamic", "static"):
        engine = StreamEngine(model, engine_config(backend=backend, threshold=0.7, kv_budget_tokens=300,
                                                   evict_chunk_tokens=60, keep_recent_frames=4))
        if backend == "static":  # compiled by default where Triton works, graphs captured at construction
            fused = engine.backend.main.fused
            assert fused.compiled and fused.compile_fallback is None and engine.backend.main._graphs
        decisions = [engine.process_frame(frames[k % 12], k * 0.125) for k in range(96)]
        results[backend] = [d for d in decisions if d is not None]
    dyn, sta = results["dynamic"], results["static"]
    assert len(sta) == len(dyn) == 24
    assert [d.respond for d in sta] == [d.respond for d in dyn]
    torch.testing.assert_close(torch.tensor([d.p_interval for d in sta]), torch.tensor([d.p_interval for d in dyn]),
                               atol=1e-3, rtol=0)
