"""Teacher-forced stream metrics: hand-worked turns (on time, early, late) and the model's late branch."""
import math

import pytest
import torch

from lionfs_ros.eval.stream_metrics import TokenSpec, average_metrics, evaluate_logits, future_from_model, stream_evaluate

from tiny_parts import random_frames

V = 12
BOS, SYS, HEAD0, HEAD1, W1, W2, OPEN = 3, 4, 5, 6, 7, 8, 10
SPEC = TokenSpec(placeholder=9, interval=1, eos=2, tokens_per_frame=2)
FRAME = [9, 9]


def turn(num_frames: int, body: list[int], opener: list[int]) -> list[int]:
    ids = list(opener)
    for f in range(num_frames):
        ids += ([SPEC.interval] if f else []) + FRAME
    return ids + [HEAD0, HEAD1] + body + [SPEC.eos]


def sample(frames: tuple[int, int] = (3, 4)):
    """Two turns: [bos sys] F,F,F ]Assistant: w1 w2 <eos> | [ F,F,F,F ]Assistant: w1 <eos>."""
    ids = turn(frames[0], [W1, W2], [BOS, SYS]) + turn(frames[1], [W1], [OPEN])
    ids = torch.tensor(ids)
    labels = torch.full_like(ids, -100)
    frame_ends = (ids == 9).nonzero().squeeze(-1).view(-1, 2)[:, -1]
    labels[frame_ends] = ids[frame_ends + 1]
    for head in (ids == HEAD0).nonzero().squeeze(-1).tolist():
        stop = head
        while ids[stop] != SPEC.eos:
            stop += 1
        labels[head:stop] = ids[head + 1:stop + 1]
    return ids, labels, frame_ends


def teacher_logits(ids, labels, frame_ends, speak_at=(), lm_wrong=()):
    """Logits predicting every label, except: decisions listed in ``speak_at`` (frame indices) say HEAD0
    instead of the interval, and LM positions in ``lm_wrong`` predict a wrong token."""
    logits = torch.zeros(len(ids), V)
    for pos in (labels != -100).nonzero().squeeze(-1).tolist():
        logits[pos, labels[pos]] = 10.0
    for f in speak_at:
        pos = frame_ends[f]
        logits[pos] = 0.0
        logits[pos, HEAD0] = 10.0
    for pos in lm_wrong:
        logits[pos] = 0.0
        logits[pos, 11] = 10.0
    return logits


def silent_at(positions, logits, frame_ends, labels):
    for f in positions:
        logits[frame_ends[f]] = 0.0
        logits[frame_ends[f], SPEC.interval] = 10.0


class Future:
    """The late branch's answers, recorded: speak at appended frame ``speak`` (None: never)."""

    def __init__(self, speak=None):
        self.speak, self.calls = speak, []

    def __call__(self, trim, first_frame, num_frames):
        self.calls.append((trim, first_frame, num_frames))
        out = torch.zeros(num_frames, V)
        out[:, SPEC.interval] = 10.0
        if self.speak is not None:
            out[self.speak] = 0.0
            out[self.speak, HEAD0] = 10.0
        return out


def test_on_time_everywhere_is_perfect():
    ids, labels, ends = sample()
    m = evaluate_logits(ids, labels, teacher_logits(ids, labels, ends), SPEC, Future(), frame_fps=2.0)
    assert m.frame_diff == 0 and m.time_diff == 0
    assert m.fluency == pytest.approx(1.0) and m.lm_correctness == 1.0
    assert m.lm_ppl == pytest.approx(1.0, abs=1e-3)


def test_early_response_counts_frames_before_the_truth():
    ids, labels, ends = sample()
    logits = teacher_logits(ids, labels, ends, speak_at=[0])  # speaks after frame 1 of 3
    m = evaluate_logits(ids, labels, logits, SPEC, Future(), frame_fps=2.0)
    # turn 1: 2 frames early, fluency (3 - 2) / (3 + 4); turn 2 on time: fluency 1
    assert m.frame_diff == pytest.approx((2 + 0) / 2)
    assert m.time_diff == pytest.approx(1.0 / 2.0)
    assert m.fluency == pytest.approx((1 / 7 + 1) / 2)


def test_late_response_feeds_the_next_turns_frames_from_a_trimmed_cache():
    ids, labels, ends = sample()
    logits = teacher_logits(ids, labels, ends)
    silent_at([2], logits, ends, labels)  # never speaks in turn 1
    future = Future(speak=1)
    m = evaluate_logits(ids, labels, logits, SPEC, future, frame_fps=2.0)
    # trim right after turn 1's last frame (position 9 -> length 10); frames 3.. of the video;
    # min(4 frames in turn 2, 3 - 1) = 2 appended; speaking at the 2nd is 2 frames late
    assert future.calls == [(int(ends[2]) + 1, 3, 2)]
    assert m.frame_diff == pytest.approx((2 + 0) / 2)
    assert m.fluency == pytest.approx(((3 - 1) / 7 + 1) / 2)


def test_late_without_any_response_is_as_late_as_frames_appended():
    ids, labels, ends = sample(frames=(3, 1))
    logits = teacher_logits(ids, labels, ends)
    silent_at([2], logits, ends, labels)
    future = Future(speak=None)
    m = evaluate_logits(ids, labels, logits, SPEC, future)
    assert future.calls[0][2] == 1  # min(1 frame in turn 2, 3 - 1)
    assert m.frame_diff == pytest.approx((1 + 0) / 2)


def test_last_turn_never_speaking_counts_as_on_time():
    ids, labels, ends = sample()
    logits = teacher_logits(ids, labels, ends)
    silent_at([6], logits, ends, labels)  # the last decision of the last turn
    future = Future()
    m = evaluate_logits(ids, labels, logits, SPEC, future)
    assert future.calls == [] and m.frame_diff == 0


def test_threshold_on_interval_probability():
    ids, labels, ends = sample()
    logits = teacher_logits(ids, labels, ends)
    logits[ends[0]] = 0.0
    logits[ends[0], SPEC.interval] = math.log(0.6 * (V - 1) / 0.4)  # P(interval) = 0.6, still the argmax
    assert evaluate_logits(ids, labels, logits, SPEC, Future(), threshold=0.0).frame_diff == 0
    assert evaluate_logits(ids, labels, logits, SPEC, Future(), threshold=0.725).frame_diff == pytest.approx(1.0)


def test_ppl_and_correctness_from_the_first_wrong_token():
    ids, labels, ends = sample()
    head = int((ids == HEAD0).nonzero()[0, 0])
    logits = teacher_logits(ids, labels, ends, lm_wrong=[head + 2])  # turn 1 targets: HEAD1 W1 W2 eos
    uniform = teacher_logits(ids, labels, ends)
    second = (ids == HEAD0).nonzero()[1, 0]
    uniform[second:second + 3] = 0.0  # turn 2's LM positions: uniform over V
    m = evaluate_logits(ids, labels, logits, SPEC, Future())
    assert m.lm_correctness == pytest.approx((2 / 4 + 1) / 2)
    assert m.fluency == pytest.approx(((3 + 2) / 7 + 1) / 2)  # on time: decisions + correct prefix
    u = evaluate_logits(ids, labels, uniform, SPEC, Future())
    assert u.lm_ppl == pytest.approx((1.0 + V) / 2, rel=1e-3)


def test_average_over_samples():
    ids, labels, ends = sample()
    a = evaluate_logits(ids, labels, teacher_logits(ids, labels, ends), SPEC, Future())
    b = evaluate_logits(ids, labels, teacher_logits(ids, labels, ends, speak_at=[0]), SPEC, Future())
    assert average_metrics([a, b]).frame_diff == pytest.approx((a.frame_diff + b.frame_diff) / 2)


@pytest.mark.parametrize("beta", [None, 0.5])
def test_model_late_branch_equals_forward_of_that_future(build, beta):
    model = build(beta=beta)
    s = model.formatter.encode([
        {"role": "stream", "num_frames": 3, "learn": True},
        {"role": "assistant", "content": "Cut it.", "learn": True},
        {"role": "stream", "num_frames": 3, "learn": True},
        {"role": "assistant", "content": "Open it.", "learn": True},
    ])
    g, e = model.preprocess(random_frames(6, 0)), model.preprocess(random_frames(12, 1), "ego")
    with torch.no_grad():
        frames = model.embed_frames(g, e)
        cache = model.new_cache()
        model(s.input_ids[None], frame_embeds=frames, past_key_values=cache)
        trim = int(s.stream_mask.nonzero()[2, 0]) + 1  # right after the first run's last frame
        branch = future_from_model(model, frames, cache)(trim, 3, 2)
        alt_ids = torch.cat([s.input_ids[:trim], torch.tensor(model.formatter.frame_ids(after_frame=True) * 2)])
        alt = model(alt_ids[None], frame_embeds=frames[:5]).logits[0]
    n1 = model.tokens_per_frame + 1
    torch.testing.assert_close(branch, alt[trim + n1 - 1 :: n1], atol=2e-5, rtol=1e-4)
    assert cache.seq_length == s.input_ids.numel()  # the branch left the full cache alone

    metrics = stream_evaluate(model, s.input_ids, s.labels, frame_embeds=frames, threshold=0.725)
    assert metrics.lm_ppl > 1.0 and 0.0 <= metrics.fluency <= 1.0 and 0.0 <= metrics.lm_correctness <= 1.0
    assert metrics.time_diff == pytest.approx(metrics.frame_diff / model.config.stream.frame_fps)


def test_answer_correctness_leaves_the_header_out_and_turns_are_kept():
    """The header tail (HEAD1) is scored by lm_correctness, not by lm_correctness_answer."""
    spec = TokenSpec(placeholder=9, interval=1, eos=2, tokens_per_frame=2, headers=((HEAD0, HEAD1), (HEAD1,)))
    ids, labels, ends = sample()
    first_head1 = int((ids == HEAD1).nonzero()[0, 0])  # its label is W1: the first answer word of turn 1
    logits = teacher_logits(ids, labels, ends, speak_at=(), lm_wrong=(first_head1,))
    m = evaluate_logits(ids, labels, logits, spec, Future(), frame_fps=2.0)
    assert m.turn_correctness == [pytest.approx(1 / 4), 1.0]  # turn 1 scores [HEAD1, W1, W2, eos]: one right
    assert m.lm_correctness == pytest.approx((1 / 4 + 1) / 2)
    assert m.lm_correctness_answer == pytest.approx((0 + 1) / 2)  # [W1, W2, eos]: wrong at once
    assert "turn_correctness" not in m.to_dict() and "lm_correctness_answer" in average_metrics([m, m]).to_dict()
