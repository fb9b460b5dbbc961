"""Question answering, teacher-forced: each question answered after the true conversation before it.

The free-running answers (the engine's, in its own context) are ``free_running``'s; these sit
beside them. The whole conversation (narrations and earlier answers teacher-forced) is fed once
with a cache; for each question the cache is cut right after the question and the engine's slow
thinker writes the answer on that branch (``slow_path.slow_answer``: the one generation loop;
after the thinking template when the slow path is on), so every answer sees exactly the frames
and turns before it.
"""
from __future__ import annotations

from collections import defaultdict

import torch

from lionfs_ros.data.stream_examples import USER, StreamExample, to_messages

from .free_running import Answer
from .slow_path import ClipFrames, SlowPath, frames_before, slow_answer


def question_ends(model, messages: list[dict]) -> list[int]:
    """Token length of the conversation up to and including each user message (the encoding is prefix-stable)."""
    ends = []
    for index, message in enumerate(messages):
        if message["role"] == USER:
            ends.append(model.formatter.encode(messages[: index + 1]).input_ids.numel())
    return ends


@torch.no_grad()
def answer_questions(model, example: StreamExample, frame_embeds: torch.Tensor, max_new_tokens: int,
                     slow: SlowPath | None = None, clip: ClipFrames | None = None) -> list[Answer]:
    """``slow`` (with ``clip``, the example's frames): answers written after the thinking template."""
    questions = [(i, t) for i, t in enumerate(example.turns) if t.role == USER]
    if not questions:
        return []
    messages = to_messages(example, learn=False)
    sample = model.formatter.encode(messages)
    cache = model.new_cache()
    model(sample.input_ids[None], frame_embeds=frame_embeds[: sample.num_frames], past_key_values=cache)
    ends = question_ends(model, messages)
    if example.instruction:
        ends = ends[1:]  # the first user message is the narration instruction
    answers = {t.answer_of: t for t in example.turns if t.answer_of is not None}
    out = []
    for (index, question), end in zip(questions, ends):
        trigger = frames_before(model, sample.input_ids, end) - 1
        predicted = slow_answer(model, cache.trim(end), False, clip, trigger, slow, max_new_tokens, question.text)
        truth = answers[index].text if index in answers else ""
        out.append(Answer(question.text, truth, predicted, question.kind))
    return out


def accuracy_by_kind(answers: list[Answer]) -> dict[str, dict[str, float]]:
    """``{"all": {...}, "<kind>": {"accuracy", "count"}}``."""
    groups: dict[str, list[Answer]] = defaultdict(list)
    for answer in answers:
        groups["all"].append(answer)
        groups[answer.kind or "none"].append(answer)
    return {kind: {"accuracy": sum(a.correct for a in group) / len(group), "count": len(group)}
            for kind, group in sorted(groups.items())}
