"""Timed conversations over a video: the common shape of every training and evaluation example.

A ``StreamExample`` is what the synthetic world and Ego4D-style narration streams both reduce to:
a video sampled at the LLM's frame rate (``frame_fps``, 2 fps in VideoLLM-online), a list of
timed turns (assistant narrations, user questions and their answers) and where its frames come
from. ``to_messages`` turns it into the message list ``StreamFormatter.encode`` takes.

Time rule (VideoLLM-online's ``ceil_time_by_fps``): a turn said at ``t`` seconds is attached
right after frame ``ceil(t * fps)``, the first frame at or after it; frame ``i`` is at ``i / fps``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

TIME_EPSILON = 1e-6  # times are stored rounded to 6 decimals; 3.5000001 * 2 must still ceil to 7
USER, ASSISTANT = "user", "assistant"


@dataclass(frozen=True)
class TimedTurn:
    time: float  # seconds from the example's first frame
    role: str  # "user" | "assistant"
    text: str
    kind: str | None = None  # the synthetic world's tag (quick / detail / normal), None elsewhere
    answer_of: int | None = None  # an assistant answer: index of the question turn it answers


@dataclass
class StreamExample:
    """One video clip with its timed turns; ``source`` loads the frames (see ``lionfs_ros.data.frames``)."""

    example_id: str
    num_frames: int  # frames at frame_fps
    frame_fps: float
    turns: list[TimedTurn]
    source: Any
    instruction: str | None = None  # a user turn fed after the first frame (VideoLLM-online's narration prompt)
    meta: dict[str, Any] = field(default_factory=dict)

    def frame_of(self, time: float) -> int:
        """Index of the frame a turn at ``time`` follows (ceil to the frame grid, clamped to the clip)."""
        index = math.ceil(time * self.frame_fps - TIME_EPSILON)
        return min(max(index, 0), self.num_frames - 1)

    def narrations(self) -> list[TimedTurn]:
        """Assistant turns that answer no question: the proactive responses."""
        return [t for t in self.turns if t.role == ASSISTANT and t.answer_of is None]

    def without_questions(self) -> "StreamExample":
        """The same clip with only its proactive narrations (the narration-stream benchmark)."""
        return StreamExample(self.example_id, self.num_frames, self.frame_fps, self.narrations(), self.source,
                             self.instruction, dict(self.meta))


def to_messages(example: StreamExample, learn: bool = True) -> list[dict]:
    """Messages for ``StreamFormatter.encode``.

    Every frame decision is learned except the first frame's (it precedes the instruction) and the
    last frame before a user turn (the user, not the model, speaks there). Assistant turns are
    learned; trailing frames after the last turn are learned as silence.
    """
    messages: list[dict] = []
    fed = 0
    if example.instruction:
        messages += [{"role": "stream", "num_frames": 1, "learn": False},
                     {"role": USER, "content": example.instruction}]
        fed = 1
    for turn in sorted(example.turns, key=lambda t: (t.time, t.answer_of is not None)):
        frame = max(example.frame_of(turn.time), fed - 1)
        count = frame + 1 - fed
        if count > 0:
            learned = count if turn.role == ASSISTANT else count - 1
            messages.append({"role": "stream", "num_frames": count, "learn": learned if learn else False})
        message = {"role": turn.role, "content": turn.text, "learn": learn and turn.role == ASSISTANT}
        if turn.answer_of is not None:
            message["answers_question"] = True  # the thinking option tells answers from narrations by it
            if turn.kind is not None:
                message["question_kind"] = turn.kind  # the synthetic world's tag (training.detail_answer_weight)
        messages.append(message)
        fed = frame + 1
    if example.num_frames > fed:
        messages.append({"role": "stream", "num_frames": example.num_frames - fed, "learn": learn})
    return messages


def turn_texts(examples: list[StreamExample]) -> list[str]:
    """Every text the examples say (for training a tokenizer)."""
    texts = []
    for example in examples:
        if example.instruction:
            texts.append(example.instruction)
        texts += [turn.text for turn in example.turns]
    return texts
