"""Stream format: token layout, labels for the stream and LM losses, and the combined loss."""
import torch
import torch.nn.functional as F

from tiny_parts import random_frames


def test_layout_matches_videollm_online_text(build):
    model = build(fused=False)
    fmt, tok = model.formatter, model.tokenizer
    sample = fmt.encode([
        {"role": "stream", "num_frames": 2, "learn": True},
        {"role": "user", "content": "what now?"},
        {"role": "assistant", "content": "Cut it.", "learn": True},
        {"role": "stream", "num_frames": 1, "learn": True},
    ])
    frame = "<v>" * model.tokens_per_frame
    expected = (
        tok.bos_token + model.config.stream.system_prompt + "\n"
        + "\n[" + frame + "," + frame + "]\nUser: what now?"
        + "\nAssistant: Cut it." + tok.eos_token
        + "\n[" + frame
    )
    assert tok.decode(sample.input_ids) == expected
    assert sample.num_frames == 3 and int(sample.visual_mask.sum()) == 30


def test_labels_mark_decisions_and_assistant_text(build):
    model = build(fused=False)
    fmt, ids = model.formatter, model.token_ids
    sample = fmt.encode([
        {"role": "stream", "num_frames": 3, "learn": True},
        {"role": "assistant", "content": "Cut it.", "learn": True},
        {"role": "stream", "num_frames": 2, "learn": 1},
        {"role": "user", "content": "why?"},
    ])
    learned = (sample.labels != -100).nonzero().squeeze(-1)
    frame_ends = sample.visual_mask.nonzero().squeeze(-1).view(-1, model.tokens_per_frame)[:, -1]
    # every learned frame decides: silent (interval) inside a run, the next text after the run's last frame
    decisions = sample.labels[frame_ends[:4]].tolist()
    header = fmt.assistant_header_ids(after_stream=True)
    assert decisions == [ids.interval, ids.interval, header[0], ids.interval]
    assert sample.stream_mask.nonzero().squeeze(-1).tolist() == frame_ends[:4].tolist()
    assert sample.labels[frame_ends[4]] == -100  # learn=1: only the first frame of the second run
    # the assistant turn: everything after the header's first token, through EOS
    body = fmt.assistant_body_ids("Cut it.")
    lm_positions = [p for p in learned.tolist() if not sample.visual_mask[p]]
    assert sample.labels[lm_positions].tolist() == header[1:] + body
    assert body[-1] == ids.eos
    # labels are the next token wherever they are set
    assert torch.equal(sample.labels[learned], sample.input_ids[learned + 1])


def test_loss_is_lm_plus_weighted_stream_plus_router_aux(tiny_dirs):
    from lionfs_ros.model import LionFSConfig, LionFSModel

    from tiny_parts import make_config

    data = make_config(tiny_dirs, beta=0.5).to_dict()
    data["stream"]["stream_loss_weight"] = 2.5
    data["dropping"]["aux_loss_coef"] = 0.3
    torch.manual_seed(0)
    model = LionFSModel.from_config(LionFSConfig.from_dict(data)).eval()
    sample = model.formatter.encode([
        {"role": "stream", "num_frames": 3, "learn": True},
        {"role": "assistant", "content": "Cut it.", "learn": True},
    ])
    g, e = model.preprocess(random_frames(3, 0)), model.preprocess(random_frames(6, 1), "ego")
    with torch.no_grad():
        out = model(sample.input_ids[None], labels=sample.labels[None], general=g, ego=e)
    ce = F.cross_entropy(out.logits[0], sample.labels, ignore_index=-100, reduction="none")
    count = int((sample.labels != -100).sum())
    stream = sample.stream_mask
    lm = (sample.labels != -100) & ~stream
    torch.testing.assert_close(out.stream_loss, ce[stream].sum() / count)
    torch.testing.assert_close(out.lm_loss, ce[lm].sum() / count)
    torch.testing.assert_close(out.loss, out.lm_loss + 2.5 * out.stream_loss + 0.3 * out.router_aux_loss)
    assert out.router_aux_loss > 0


def test_training_step_moves_only_trainable_parts(build):
    model = build(beta=0.5, lora=True).train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".lora_A." in n for n in trainable)
    assert any(n.startswith("connector.") for n in trainable) and any(n.startswith("ego_connector.") for n in trainable)
    assert any(n.startswith("aggregation_router.") for n in trainable) and any(n.startswith("token_dropping.") for n in trainable)
    assert not any(n.startswith(("vision.", "ego.")) for n in trainable)
    assert not any("base_layer" in n or "embed_tokens" in n for n in trainable)
    sample = model.formatter.encode([{"role": "stream", "num_frames": 2, "learn": True}, {"role": "assistant", "content": "Cut it.", "learn": True}])
    g, e = model.preprocess(random_frames(2, 0)), model.preprocess(random_frames(4, 1), "ego")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        out = model(sample.input_ids[None], labels=sample.labels[None], general=g, ego=e)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss))
    assert losses[-1] < losses[0]
