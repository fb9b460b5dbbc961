"""The synthetic world (``lionfs synth``) as stream examples: one per episode.

Narrations become proactive assistant turns; with ``questions`` the episode's user questions
and their answers are interleaved at their times (VideoLLM-online's narration stream and live
chat in one conversation). The LLM sees frames at ``frame_fps`` (2 by default, the general
encoder's rate in the manifest); the egocentric encoder sees the native 8 fps frames.
"""
from __future__ import annotations

from pathlib import Path

from .frame_sources import SynthFrames
from .stream_examples import ASSISTANT, USER, StreamExample, TimedTurn
from .synth.reader import episode_ids, load_episode, read_manifest

DEFAULT_INSTRUCTION = "Narrate what I do, briefly."


def synth_examples(
    root: str | Path,
    frame_fps: float,
    questions: bool = True,
    instruction: str | None = DEFAULT_INSTRUCTION,
    limit: int | None = None,
) -> list[StreamExample]:
    """One example per episode of the dataset at ``root`` (annotations only are read here)."""
    root = Path(root)
    manifest = read_manifest(root)
    native_fps = float(manifest["fps"])
    examples = []
    for episode_id in episode_ids(root)[:limit]:
        episode = load_episode(root, episode_id, frames=False)
        num_frames = int(episode.duration * frame_fps + 1e-6) + 1
        turns = [TimedTurn(n.time, ASSISTANT, n.text, n.kind) for n in episode.narrations]
        if questions:
            for q in episode.questions:
                turns.append(TimedTurn(q.time, USER, q.question, q.kind))
                turns.append(TimedTurn(q.time, ASSISTANT, q.answer, q.kind, answer_of=len(turns) - 1))
        turns.sort(key=lambda t: (t.time, t.answer_of is not None))
        turns = _reindex_answers(turns)
        source = SynthFrames(str(root), episode_id, native_fps, frame_fps, num_frames)
        meta = {"question_types": [q.type for q in episode.questions], "split": episode.split, "heldout": episode.heldout}
        examples.append(StreamExample(f"{root.name}/{episode_id}", num_frames, frame_fps, turns, source, instruction, meta))
    return examples


def _reindex_answers(turns: list[TimedTurn]) -> list[TimedTurn]:
    """After sorting, point each answer at its question's new index (the user turn just before it)."""
    out = []
    for index, turn in enumerate(turns):
        if turn.answer_of is not None:
            if index == 0 or turns[index - 1].role != USER:
                raise ValueError("an answer must directly follow its question")
            turn = TimedTurn(turn.time, turn.role, turn.text, turn.kind, answer_of=index - 1)
        out.append(turn)
    return out
