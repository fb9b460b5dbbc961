"""Bounded memory on a long stream, and positions after eviction (re-rotated keys)."""
import torch

from engine_parts import engine_config, stream_frames
from lionfs_ros.engine import StreamEngine
from lionfs_ros.engine.kv_budget import FRAME, SYSTEM, TEXT, Segment, plan_eviction
from lionfs_ros.engine.lm_state import DynamicLMState, rope_rotation
from lionfs_ros.engine.timing import rss_bytes

CI_FRAMES = 400  # 200 s of stream at 2 fps (the benchmark runs an hour)
BUDGET, CHUNK, RECENT = 300, 60, 8
WARM_UP = 100
RSS_SLACK = 32 * 1024 * 1024


def test_eviction_order_keeps_system_recent_frames_then_text():
    segs = [Segment(SYSTEM, 0, 20)] + [Segment(FRAME, 20 + 11 * i, 11) for i in range(10)]
    segs.insert(4, Segment(TEXT, 53, 9))  # an old answer between frames
    plan = plan_eviction(segs, budget=100, chunk=10, keep_recent=3)
    held = sum(s.length for s in segs)
    assert [segs[i].kind for i in plan.drop] == [FRAME] * 5 and held - plan.tokens <= 90
    plan = plan_eviction(segs, budget=60, chunk=10, keep_recent=3)  # frames are not enough: old text goes too
    kinds = [segs[i].kind for i in plan.drop]
    assert kinds.count(FRAME) == 7 and kinds.count(TEXT) == 1 and SYSTEM not in kinds


def test_reindexed_positions_give_the_same_attention_as_the_original_ones(baseline_model):
    """Evicting a prefix shifts every kept entry by the same amount: RoPE attention must not change."""
    model = baseline_model
    frames = stream_frames(4, seed=10)
    ids = model.formatter.system_ids() + model.formatter.stream_open_ids()
    with torch.no_grad():
        embeds = model.embed_frames(model.preprocess(frames))
        grow = DynamicLMState(model)
        grow.feed(ids)
        for k in range(4):
            grow.feed(model.formatter.frame_ids(after_frame=k > 0), embeds[k])
        keep = torch.ones(grow.next_position, dtype=torch.bool)
        keep[:len(ids)] = False
        shifted, plain = grow.fork(), grow.fork()
        shifted.evict(keep, reindex=True)
        grow.evict(keep, reindex=False)
        assert shifted.next_position == grow.next_position - len(ids)
        probe = model.formatter.frame_ids(after_frame=True)
        want = grow.feed(probe, embeds[0])
        got = shifted.feed(probe, embeds[0])
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        # Layer 0 keys depend only on the token and its position: after re-indexing they must be the
        # keys a fresh pass computes for those tokens at their new positions.
        fresh = DynamicLMState(model)
        fresh.feed(model.formatter.frame_ids(after_frame=False), embeds[0])
        for k in range(1, 4):
            fresh.feed(model.formatter.frame_ids(after_frame=True), embeds[k])
        kept = fresh.num_tokens
        torch.testing.assert_close(shifted.cache.keys[0][..., :kept, :], fresh.cache.keys[0], atol=1e-5, rtol=1e-4)
        plain.cache.retain(keep)  # renumbered without rotating the keys: not what a fresh pass caches
        plain.cache.renumber(keep.long().cumsum(0) - 1, int(keep.sum()), rotate=None)
        assert (plain.cache.keys[0][..., :kept, :] - fresh.cache.keys[0]).abs().max() > 0.1
        rotate = rope_rotation(model.llm.get_decoder().rotary_emb)
        k = torch.randn(1, 2, 3, 16)
        torch.testing.assert_close(rotate(rotate(k, torch.full((1, 3), 5)), torch.full((1, 3), -5)), k)


def test_memory_is_flat_on_a_long_stream(fused_model):
    cfg = engine_config(threshold=0.65, kv_budget_tokens=BUDGET, evict_chunk_tokens=CHUNK, keep_recent_frames=RECENT,
                        max_new_tokens=3)
    engine = StreamEngine(fused_model, cfg)
    frames = stream_frames(8, seed=11)
    max_positions = fused_model.llm.config.max_position_embeddings
    samples = []
    for k in range(CI_FRAMES):
        engine.process_frame(frames[k % 8], k * 0.5)
        stats = engine.stats()
        assert stats["kv_tokens"] <= BUDGET and stats["next_position"] <= BUDGET < max_positions
        if k >= WARM_UP:
            samples.append((stats["kv_bytes"], rss_bytes()))
    stats = engine.stats()
    assert stats["compactions"] > 5 and stats["answers"] > 0
    kv = [s[0] for s in samples]
    assert max(kv) / min(kv) < 1.5  # between the low-water mark and the budget, never growing
    assert samples[-1][1] - samples[0][1] < RSS_SLACK
    segments = engine.context.segments
    assert segments[0].kind == SYSTEM and segments[0].start == 0
    frames_held = [s for s in segments if s.kind == FRAME]
    assert len(frames_held) >= RECENT and frames_held[-1].time == (CI_FRAMES - 1) * 0.5
    assert stats["evicted_frames"] > 10 * stats["evicted_text"]  # frames go first, text is kept longer
