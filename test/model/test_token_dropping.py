"""Token dropping: per-frame capacity, causal decisions, cache contents, beta=0 == plain backbone."""
import pytest
import torch

from lionfs_ros.model.token_dropping import frame_capacity

from tiny_parts import random_frames

CONVERSATION = [
    {"role": "stream", "num_frames": 2, "learn": True},
    {"role": "user", "content": "what is the person doing?"},
    {"role": "assistant", "content": "The person cuts a red tomato.", "learn": True},
    {"role": "stream", "num_frames": 3, "learn": True},
    {"role": "assistant", "content": "You open the fridge.", "learn": True},
]


def encoded(model, seed=0):
    sample = model.formatter.encode(CONVERSATION)
    general = model.preprocess(random_frames(sample.num_frames, seed))
    ego = model.preprocess(random_frames(sample.num_frames * model.config.ego.frames_per_frame, seed + 1), "ego") if model.ego else None
    with torch.no_grad():
        frames = model.embed_frames(general, ego)
    return sample, frames


def chunks_at_frame_ends(sample, n):
    """Cut the sequence after every frame: what the online engine feeds step by step."""
    ends = sample.visual_mask.nonzero().squeeze(-1).view(-1, n)[:, -1] + 1
    cuts = [0, *ends.tolist(), sample.input_ids.numel()]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("beta", [None, 0.5])
def test_incremental_equals_full_forward(build, attn, beta):
    model = build(beta=beta, attn=attn)
    sample, frames = encoded(model)
    n = model.tokens_per_frame
    with torch.no_grad():
        full = model(sample.input_ids[None], frame_embeds=frames)
        cache, pieces, kept, used = model.new_cache(), [], {i: [] for i in full.kept}, 0
        for a, b in chunks_at_frame_ends(sample, n):
            ids = sample.input_ids[a:b]
            count = int((ids == model.token_ids.placeholder).sum()) // n
            out = model.step_ids(ids, frames[used:used + count] if count else None, cache)
            used += count
            pieces.append(out.logits[0])
            for layer in kept:
                kept[layer].append(out.kept[layer][0] if layer in out.kept else torch.ones(b - a, dtype=torch.bool))
    torch.testing.assert_close(torch.cat(pieces), full.logits[0], atol=2e-5, rtol=1e-4)
    for layer, parts in kept.items():
        assert torch.equal(torch.cat(parts), full.kept[layer][0])
    assert cache.seq_length == sample.input_ids.numel()


def test_dropping_layers_cache_only_kept_tokens_at_true_positions(build):
    model = build(beta=0.5)
    sample, frames = encoded(model)
    with torch.no_grad():
        cache = model.new_cache()
        out = model(sample.input_ids[None], frame_embeds=frames, past_key_values=cache)
    n, keep = model.tokens_per_frame, frame_capacity(model.tokens_per_frame, 0.5)
    length, num_visual = sample.input_ids.numel(), int(sample.visual_mask.sum())
    dropped_per_layer = num_visual - num_visual // n * keep
    assert sorted(out.kept) == [0, 2]  # interleaved over 4 layers
    for layer in range(4):
        expected = length - dropped_per_layer if layer in out.kept else length
        assert cache.layer_length(layer) == expected
        assert cache.keys[layer].shape[-2] == expected
    kept0 = out.kept[0][0]
    assert torch.equal(cache.positions[0][0], kept0.nonzero().squeeze(-1))
    per_frame = kept0[sample.visual_mask].view(-1, n).sum(-1)
    assert per_frame.tolist() == [keep] * (num_visual // n)
    assert kept0[~sample.visual_mask].all()  # text always passes


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_beta_zero_reproduces_plain_backbone(build, attn):
    model = build(beta=0.0, fused=False, attn=attn)
    sample, frames = encoded(model)
    with torch.no_grad():
        ours = model(sample.input_ids[None], frame_embeds=frames)
        embeds, _ = model.joint_embed(sample.input_ids[None], frames)
        plain = model.llm(inputs_embeds=embeds).logits
    assert all(k.all() for k in ours.kept.values())
    assert torch.equal(ours.logits, plain)


def test_beta_half_changes_outputs_and_router_gets_gradient(build):
    model = build(beta=0.5, fused=False).train()
    sample, frames = encoded(model)
    out = model(sample.input_ids[None], labels=sample.labels[None], frame_embeds=frames.detach())
    out.loss.backward()
    for router in model.token_dropping.routers.values():
        assert router.proj.weight.grad is not None and router.proj.weight.grad.abs().sum() > 0
    with torch.no_grad():
        embeds, _ = model.joint_embed(sample.input_ids[None], frames)
        plain = model.llm(inputs_embeds=embeds).logits
    assert not torch.allclose(out.logits, plain, atol=1e-3)
    assert out.router_aux_loss > 0


def test_padded_batch_matches_single_samples(build):
    model = build(beta=0.5)
    short = model.formatter.encode(CONVERSATION[:3])
    long = model.formatter.encode(CONVERSATION)
    g = model.preprocess(random_frames(long.num_frames + short.num_frames, 3))
    e = model.preprocess(random_frames(2 * (long.num_frames + short.num_frames), 4), "ego")
    with torch.no_grad():
        frames = model.embed_frames(g, e)
        from lionfs_ros.model import pad_batch

        batch = pad_batch([long, short], model.tokenizer.pad_token_id, -100)
        both = model(batch["input_ids"], attention_mask=batch["attention_mask"], frame_embeds=frames)
        one = model(long.input_ids[None], frame_embeds=frames[: long.num_frames])
        two = model(short.input_ids[None], frame_embeds=frames[long.num_frames:])
    torch.testing.assert_close(both.logits[0], one.logits[0], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(both.logits[1, : short.input_ids.numel()], two.logits[0], atol=2e-5, rtol=1e-4)


def test_frame_capacity_rounds_half_up():
    assert frame_capacity(10, 0.5) == 5
    assert frame_capacity(10, 0.0) == 10
    assert frame_capacity(10, 1.0) == 0
    assert frame_capacity(9, 0.5) == 5
    assert frame_capacity(10, 0.25) == 8
