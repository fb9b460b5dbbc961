"""Free-running ("self-conditioned") evaluation of one clip, through the engine: the model hears its own answers.

The clip runs through a synchronous ``StreamEngine`` with the settings ``lionfs_node`` runs
(``lionfs_ros.config.engine_config``), so the rate gate, decision rule, KV budget, trigger policy
and answer commit are the node's. The only difference is where the frame tokens come from: the
clip is embedded once, in a batch (``evaluate.embed_example``), and each frame is handed to
``process_frame`` with its fused tokens at its time ``i / frame_fps``. The clip's user questions
are asked (``engine.ask``) at their times; the engine answers each at the first decided frame at
or after it, as it answers a robot's user.

Scoring: proactive responses (not answers to questions) are matched one to one to the true
narrations within the tolerance (``eval.matching``, the same as ``lionfs replay``), giving
trigger precision / recall / F1, free-running TimeDiff (mean |response - truth| of matched pairs)
and the text scores of matched pairs; answers are compared with the true answers word for word
(lower-cased, punctuation dropped).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lionfs_ros.data.stream_examples import USER, StreamExample
from lionfs_ros.engine import Decision, EngineConfig, StreamEngine

from .matching import MatchWindow, match_triggers
from .text_scores import normalize_tokens


@dataclass(frozen=True)
class Response:
    """One final response of the engine (cancelled ones are left out, as a robot's user never hears them)."""

    frame: int  # index of the triggering frame in the clip
    time: float  # its time, seconds from the clip's first frame
    text: str
    query: str | None = None  # the question it answers; None for a proactive response
    query_id: str | None = None


@dataclass
class ClipRun:
    responses: list[Response] = field(default_factory=list)  # in turn order
    decisions: list[Decision] = field(default_factory=list)  # the engine's, one per decided frame (meta: its index)
    stats: dict = field(default_factory=dict)  # the engine's stats after the clip

    @property
    def decided(self) -> list[int]:
        """Frames the engine decided (the others were skipped by its rate gate)."""
        return [d.meta for d in self.decisions]

    @property
    def step_ms(self) -> list[float]:
        """Per decided frame: the LLM step and the decision (frame tokens given), ms."""
        return [d.compute_s * 1e3 for d in self.decisions]

    @property
    def proactive(self) -> list[Response]:
        return [r for r in self.responses if r.query is None]


@torch.no_grad()
def run_clip(model, config: EngineConfig, example: StreamExample, frame_embeds: torch.Tensor,
             pixels: np.ndarray | None = None, backend=None) -> ClipRun:
    """``frame_embeds [T, n, d]``: the clip's fused frame tokens; ``pixels`` uint8 ``[T, S, S, 3]``
    (the general encoder's input) when the slow thinker may need keyframes. ``backend``: one built for
    ``config`` and reused from clip to clip (restarted here: on a GPU its graphs are captured once)."""
    if backend is not None:
        backend.restart()
    engine = StreamEngine(model, config, backend=backend)
    finals = {}
    engine.on_response = lambda update: finals.__setitem__(update.turn_index, update) if update.is_final else None
    for index, turn in enumerate(example.turns):
        if turn.role == USER:
            engine.ask(turn.text, turn.time, query_id=str(index))
    run = ClipRun()
    engine.on_decision = run.decisions.append
    for index in range(example.num_frames):
        rgb = None if pixels is None else pixels[index]
        engine.process_frame(rgb, index / example.frame_fps, meta=index, embeds=frame_embeds[index])
    engine.flush()
    for _, update in sorted(finals.items()):
        if not update.cancelled and update.error is None:
            run.responses.append(Response(int(update.trigger_meta), float(update.trigger_time), update.text,
                                          update.query, update.query_id))
    run.stats = engine.stats()
    return run


def same_words(a: str, b: str) -> bool:
    """Equal after lower-casing and dropping punctuation (how answers and narrations are compared)."""
    return normalize_tokens(a) == normalize_tokens(b)


@dataclass
class TriggerTally:
    """Counts of one clip or a dataset (picklable; summed over clips)."""

    predicted: int = 0
    truth: int = 0
    matched: int = 0
    abs_error_s: float = 0.0  # sum of |response - truth| over matched pairs
    offset_s: float = 0.0  # sum of response - truth
    hypotheses: list[str] = field(default_factory=list)  # matched responses' texts
    references: list[str] = field(default_factory=list)  # their true narrations
    truth_by_kind: dict[str, int] = field(default_factory=dict)
    matched_by_kind: dict[str, int] = field(default_factory=dict)

    def add(self, other: "TriggerTally") -> None:
        self.predicted += other.predicted
        self.truth += other.truth
        self.matched += other.matched
        self.abs_error_s += other.abs_error_s
        self.offset_s += other.offset_s
        self.hypotheses += other.hypotheses
        self.references += other.references
        for mine, theirs in ((self.truth_by_kind, other.truth_by_kind), (self.matched_by_kind, other.matched_by_kind)):
            for kind, count in theirs.items():
                mine[kind] = mine.get(kind, 0) + count

    def scores(self) -> dict:
        precision = self.matched / self.predicted if self.predicted else 0.0
        recall = self.matched / self.truth if self.truth else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1,
                "time_diff": self.abs_error_s / self.matched if self.matched else None,
                "mean_offset_s": self.offset_s / self.matched if self.matched else None}


def score_triggers(example: StreamExample, run: ClipRun, tolerance_s: float) -> TriggerTally:
    narrations = sorted(example.narrations(), key=lambda t: t.time)
    responses = run.proactive
    result = match_triggers([r.time for r in responses], [n.time for n in narrations],
                            MatchWindow(tolerance_s, tolerance_s))
    tally = TriggerTally(predicted=len(responses), truth=len(narrations), matched=result.matched)
    for pair in result.pairs:
        tally.abs_error_s += abs(pair.delta_s)
        tally.offset_s += pair.delta_s
        tally.hypotheses.append(responses[pair.response_index].text)
        tally.references.append(narrations[pair.truth_index].text)
    matched = {pair.truth_index for pair in result.pairs}
    for index, narration in enumerate(narrations):
        kind = narration.kind or "narration"
        tally.truth_by_kind[kind] = tally.truth_by_kind.get(kind, 0) + 1
        tally.matched_by_kind[kind] = tally.matched_by_kind.get(kind, 0) + (index in matched)
    return tally


@dataclass
class Answer:
    question: str
    truth: str
    predicted: str
    kind: str | None

    @property
    def correct(self) -> bool:
        return same_words(self.predicted, self.truth)


def answers_of(example: StreamExample, run: ClipRun) -> list[Answer]:
    """Each question of the clip with the engine's answer ("" when it gave none: dropped or cancelled)."""
    given = {r.query_id: r.text for r in run.responses if r.query_id is not None}
    truths = {t.answer_of: t.text for t in example.turns if t.answer_of is not None}
    return [Answer(turn.text, truths.get(index, ""), given.get(str(index), ""), turn.kind)
            for index, turn in enumerate(example.turns) if turn.role == USER]
