"""The main stream context: what has been fed to the LLM, in the model's stream format.

Pieces come from the model's ``StreamFormatter``, the same ones training encodes, in the same
order, so an engine that answers right after each trigger builds exactly the token sequence of
``formatter.encode`` for that conversation::

    <bos>system\\n  \\n[F ,F ,F  ]\\nUser: q  \\nAssistant: a<eos>  \\n[F ,F  ]\\nAssistant: a<eos> ...

Answers are committed *in time order*: when the slow thinker finishes while frames kept coming,
its answer is appended after the newest frame (the frames seen while it was written stay before
it). Each fed piece is a ledger segment, which the KV budget evicts by.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .kv_budget import FRAME, SYSTEM, TEXT, Segment, apply_plan, keep_mask, plan_eviction
from .lm_state import LMState

USER = "user"
ASSISTANT = "assistant"


@dataclass
class ContextFork:
    """A copy of the main context at a trigger, for the slow thinker (local only)."""

    state: LMState
    after_stream: bool  # the context ends inside the stream (a ']' must close it first)
    header: list[int] | None = None  # ids that open the answer instead of the assistant header (a rendered question's last token)


@dataclass
class EvictionStats:
    compactions: int = 0
    evicted_tokens: int = 0
    evicted_frames: int = 0
    evicted_text: int = 0


class StreamContext:
    def __init__(self, model, state: LMState, *, budget: int, chunk: int, keep_recent_frames: int,
                 reindex: bool, max_query_tokens: int, system_prompt: str | None = None):
        self.model = model
        self.fmt = model.formatter
        self.state = state
        self.budget, self.chunk, self.keep_recent = budget, chunk, keep_recent_frames
        self.reindex = reindex
        self.max_query_tokens = max_query_tokens
        self.segments: list[Segment] = []
        self.dialogue: list[tuple[str, str]] = []  # (role, text) of every user/assistant turn
        self.in_stream = False
        self.frames_fed = 0
        self.truncated_queries = 0
        self.eviction = EvictionStats()
        self.system_prompt = model.config.stream.system_prompt if system_prompt is None else system_prompt
        # stream.tokenize 'rendered' / commit 'generated' (VideoLLM-online's demo): the system prompt waits
        # for the stream opener; ``header`` is a rendered question's last token, which opens its answer;
        # ``pending`` the ids fed before the next frame in place of the interval token (after an answer).
        self.opened = not self.fmt.rendered
        self.header: list[int] | None = None
        self.pending: list[int] | None = None
        if self.opened:
            self._feed(self.fmt.system_ids(self.system_prompt), SYSTEM, None)

    # Feeding.
    def _feed(self, ids: list[int], kind: str, time: float | None, embeds=None) -> torch.Tensor:
        start = self.state.next_position
        logits = self.state.feed(ids, embeds)
        self.segments.append(Segment(kind, start, len(ids), time))
        return logits

    def feed_frame(self, embeds: torch.Tensor, time: float, readout=None):
        """One decided frame ``[n, d]``; returns the logits at its last placeholder ``[V]`` (or ``readout`` of them:
        ``LMState.feed``)."""
        if not self.opened:
            self._feed(self.fmt.opening_ids(self.system_prompt), SYSTEM, time)
            self.opened = True
            ids = self.fmt.frame_ids(after_frame=False)
        elif self.pending is not None:
            ids = self.pending + self.fmt.frame_ids(after_frame=False)
        elif not self.in_stream:
            self._feed(self.fmt.stream_open_ids(), TEXT, time)
            ids = self.fmt.frame_ids(after_frame=False)
        else:
            ids = self.fmt.frame_ids(after_frame=True)
        start = self.state.next_position
        out = self.state.feed(ids, embeds, readout=readout)
        self.frame_fed(start, len(ids), time)
        return out

    def plain_frame_ids(self) -> list[int] | None:
        """The next frame's ids if it is a plain frame right after a frame (the one fixed-shape piece, which a
        ``StreamGroup`` feeds for several streams in one batched step), else None (it feeds alone)."""
        return self.fmt.frame_ids(after_frame=True) if self.opened and self.in_stream and self.pending is None else None

    def frame_fed(self, start: int, length: int, time: float) -> None:
        """Record a frame piece fed at ``start`` (by ``feed_frame``, or by a batched step on this context's state)."""
        self.segments.append(Segment(FRAME, start, length, time))
        self.header = self.pending = None
        self.in_stream = True
        self.frames_fed += 1

    def cut_query(self, text: str) -> str:
        """The question, cut to ``max_query_tokens`` tokens (so positions stay bounded)."""
        ids = self.fmt.text_ids(text)
        if len(ids) <= self.max_query_tokens:
            return text
        self.truncated_queries += 1
        return self.fmt.tokenizer.decode(ids[: self.max_query_tokens])

    def feed_user(self, text: str, time: float) -> None:
        if not self.opened:
            self._feed(self.fmt.system_ids(self.system_prompt), SYSTEM, time)
            self.opened = True
        if self.fmt.rendered:
            ids, self.header = self.fmt.question_ids(text, after_stream=self.in_stream)
        else:
            ids = self.fmt.user_ids(text, after_stream=self.in_stream)
        self._feed(ids, TEXT, time)
        self.in_stream, self.pending = False, None
        self.dialogue.append((USER, text))

    def feed_answer(self, text: str, time: float, generated: list[int] | None = None, truncated: bool = False) -> None:
        """Commit an assistant turn (the slow thinker's final text; with ``stream.commit: generated``, its ids)."""
        header = self.header if self.header is not None else self.fmt.assistant_header_ids(after_stream=self.in_stream)
        if self.fmt.cfg.commit == "generated" and generated is not None:
            # As VideoLLM-online's demo: every generated id but the last was fed while decoding; the
            # last (EOS, then the stream opener; or a truncated answer's last token) waits for the next frame.
            self._feed(header + (generated[:-1] if truncated else generated), TEXT, time)
            self.pending = generated[-1:] if truncated else [self.fmt.ids.eos] + self.fmt.stream_open_ids()
            self.in_stream = True
        else:
            self._feed(header + self.fmt.assistant_body_ids(text), TEXT, time)
            self.in_stream = False
        self.header = None
        self.dialogue.append((ASSISTANT, text))

    def fork(self) -> ContextFork:
        return ContextFork(self.state.fork(), self.in_stream, self.header)

    def portable_dialogue(self, turns: int) -> list[tuple[str, str]]:
        """("system", prompt) then the last ``turns`` dialogue turns: what a remote slow thinker gets."""
        recent = self.dialogue[-turns:] if turns else []
        return [("system", self.system_prompt), *recent]

    # Memory.
    @property
    def num_tokens(self) -> int:
        return sum(s.length for s in self.segments)

    def evict_if_needed(self) -> int:
        """Apply the KV budget; returns the tokens evicted (0 when under budget)."""
        plan = plan_eviction(self.segments, self.budget, self.chunk, self.keep_recent)
        if not plan.drop:
            return 0
        keep = keep_mask(self.segments, plan.drop, self.state.next_position)
        self.state.evict(keep, self.reindex)
        kinds = [self.segments[i].kind for i in plan.drop]
        self.segments = apply_plan(self.segments, plan, self.reindex)
        self.eviction.compactions += 1
        self.eviction.evicted_tokens += plan.tokens
        self.eviction.evicted_frames += kinds.count(FRAME)
        self.eviction.evicted_text += kinds.count(TEXT)
        return plan.tokens
