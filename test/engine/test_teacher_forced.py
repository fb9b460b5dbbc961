"""The engine's decisions on a recorded stream equal the model's teacher-forced decisions.

The engine runs synchronously (answers written inline, right after their frame); the conversation
it produced (frames, the question, its answers) is then encoded by the training formatter and run
as one full-sequence forward. Every decision position must give the same P(interval) and verdict.
"""
import torch

from engine_parts import engine_config, stream_frames
from lionfs_ros.engine import StreamEngine
from lionfs_ros.model.modeling_lionfs import respond_mask

FPS_IN = 4.0  # recorded at 4 fps: every frame feeds the ego tower (2x the general rate), every other one is decided
NUM_FRAMES = 32
QUESTION_TIME = 2.1  # answered at the first decided frame at or after it: t = 2.5
QUESTION = "what is the person doing?"


def run_engine(model, frames, threshold):
    engine = StreamEngine(model, engine_config(threshold=threshold, kv_budget_tokens=900))
    finals = []
    engine.on_response = lambda u: finals.append(u) if u.is_final else None
    engine.ask(QUESTION, QUESTION_TIME)
    decisions = [d for i, f in enumerate(frames) if (d := engine.process_frame(f, i / FPS_IN)) is not None]
    assert engine.stats()["compactions"] == 0  # the comparison needs the whole context
    return engine, decisions, {u.turn_index: u for u in finals}


def conversation(decisions, finals):
    messages = []
    for d in decisions:
        if messages and messages[-1]["role"] == "stream":
            messages[-1]["num_frames"] += 1
        else:
            messages.append({"role": "stream", "num_frames": 1})
        if d.query is not None:
            messages.append({"role": "user", "content": d.query})
        if d.turn_index is not None and finals[d.turn_index].text:
            messages.append({"role": "assistant", "content": finals[d.turn_index].text})
    return messages


def ego_pixels(model, frames):
    """The engine's ego window: for decided frame k (recorded frame 2k) frames 2k-1 and 2k; k=0 repeats frame 0."""
    order = [0, 0] + [i for k in range(1, len(frames) // 2) for i in (2 * k - 1, 2 * k)]
    return model.preprocess(frames[order], "ego")


def test_decisions_match_teacher_forcing(fused_model):
    model = fused_model
    frames = stream_frames(NUM_FRAMES, seed=3)
    # A threshold inside the spread of P(interval) on these frames gives both verdicts.
    _, probe, _ = run_engine(model, frames, threshold=0.0)
    threshold = float(torch.tensor([d.p_interval for d in probe]).median())
    engine, decisions, finals = run_engine(model, frames, threshold)
    verdicts = [d.respond for d in decisions if d.query is None]
    assert any(verdicts) and not all(verdicts)
    assert len(finals) == sum(d.turn_index is not None for d in decisions) >= 2

    sample = model.formatter.encode(conversation(decisions, finals))
    with torch.no_grad():
        embeds = model.embed_frames(model.preprocess(frames[::2]), ego_pixels(model, frames))
        logits = model.step_ids(sample.input_ids, embeds).logits[0]  # [L, V]
    ends = (sample.input_ids == model.token_ids.placeholder).nonzero().squeeze(-1).view(-1, model.tokens_per_frame)[:, -1]
    teacher_p = model.p_interval(logits[ends])
    teacher_respond = respond_mask(logits[ends], model.token_ids.interval, threshold)
    engine_p = torch.tensor([d.p_interval for d in decisions])
    torch.testing.assert_close(engine_p, teacher_p, atol=1e-4, rtol=0)
    for d, respond in zip(decisions, teacher_respond.tolist()):
        assert d.respond == (respond or d.query is not None)
    # The engine's context is exactly the training layout of that conversation.
    assert engine.context.state.next_position == sample.input_ids.numel()


def test_question_answered_at_the_first_frame_at_or_after_its_time(fused_model):
    frames = stream_frames(NUM_FRAMES, seed=3)
    _, decisions, finals = run_engine(fused_model, frames, threshold=0.0)
    asked = [d for d in decisions if d.query is not None]
    assert len(asked) == 1
    assert asked[0].frame_time == 2.5 and asked[0].query == QUESTION and asked[0].action == "answer"
    assert all(d.frame_time < QUESTION_TIME for d in decisions if d.frame_index < asked[0].frame_index)
    answer = finals[asked[0].turn_index]
    assert answer.query == QUESTION and answer.query_id == asked[0].query_id and answer.trigger_score == 1.0
    assert answer.trigger_time == 2.5 and answer.num_tokens >= 1
