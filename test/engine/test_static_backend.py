"""The static backend's math (preallocated KV, slot positions, fused projections) equals the dynamic one.

On the CPU it runs without CUDA graphs; the graphs replay exactly this code on a GPU.
"""
import pytest
import torch

from engine_parts import engine_config, stream_frames
from lionfs_ros.engine import StreamEngine
from lionfs_ros.engine.cuda_graphs import StaticBackend, static_backend_supported
from lionfs_ros.engine.lm_state import DynamicLMState

ATOL = 1e-4


def feeds(model):
    fmt = model.formatter
    frames = stream_frames(5, seed=12)
    with torch.no_grad():
        embeds = model.embed_frames(model.preprocess(frames))
    out = [(fmt.system_ids(), None), (fmt.stream_open_ids(), None)]
    out += [(fmt.frame_ids(after_frame=k > 0), embeds[k]) for k in range(3)]
    out += [(fmt.user_ids("what now?", after_stream=True), None), ([7], None), ([9], None)]
    out += [(fmt.stream_open_ids(), None)] + [(fmt.frame_ids(after_frame=k > 3), embeds[k]) for k in (3, 4)]
    return out


@pytest.mark.parametrize("attention", ["sdpa", "split"])
def test_static_state_matches_dynamic_through_feeds_fork_and_eviction(baseline_model, attention):
    model = baseline_model
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


@pytest.mark.parametrize("attention", ["sdpa", "split"])
def test_engine_on_the_static_backend_decides_like_the_dynamic_one(baseline_model, attention):
    frames = stream_frames(12, seed=13)
    results = {}
    for backend in ("dynamic", "static"):
        engine = StreamEngine(baseline_model, engine_config(backend=backend, threshold=0.7, kv_budget_tokens=300,
                                                            evict_chunk_tokens=60, keep_recent_frames=4,
                                                            attention=attention))
        decisions = [engine.process_frame(f, k * 0.5) for k in range(40) for f in [frames[k % 12]]]
        results[backend] = (decisions, engine.stats())
    (dyn, dyn_stats), (sta, sta_stats) = results["dynamic"], results["static"]
    assert sta_stats["backend"] == "static" and sta_stats["compactions"] == dyn_stats["compactions"] > 0
    assert [d.respond for d in sta] == [d.respond for d in dyn] and any(d.respond for d in dyn)
    torch.testing.assert_close(torch.tensor([d.p_interval for d in sta]), torch.tensor([d.p_interval for d in dyn]),
                               atol=ATOL, rtol=0)
    assert sta_stats["answers"] == dyn_stats["answers"] > 0


def test_static_backend_refuses_token_dropping(fused_model):
    assert "token dropping" in static_backend_supported(fused_model)
    with pytest.raises(ValueError, match="token dropping"):
        StreamEngine(fused_model, engine_config(backend="static"))


def test_device_preprocess_gives_the_models_pixels(fused_model):
    from lionfs_ros.model.image_processing import DeviceImageProcessor

    for encoder, source in ((fused_model.vision, "general"), (fused_model.ego, "ego")):
        prep = DeviceImageProcessor(encoder.processor, torch.device("cpu"))
        for rgb in stream_frames(2, seed=14, size=57):
            pixels = prep.normalize(prep.resize(rgb))
            assert torch.equal(pixels, fused_model.preprocess(rgb, source))
