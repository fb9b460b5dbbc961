"""The slow thinker: writes an answer from keyframes and the context, streaming tokens.

``SlowThinker`` is the interface the engine calls; ``SlowThinkRequest`` carries portable fields
(keyframes, dialogue, question, limits: what a ROS action goal can hold) plus, in-process only, a
fork of the engine's KV cache. ``LocalSlowThinker`` runs the model: with a fork it appends the
thinking template to the fork (no re-encoding of the stream); from portable fields alone it
builds the whole prompt (``keyframes.build_thinking_inputs`` with ``context``) on a fresh state.
Generation is greedy, stops at EOS (unless ``stop_on_eos`` is off) or ``max_new_tokens``, and
checks the request's ``cancel`` event between tokens.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from lionfs_ros.model.regions import RegionProposer, make_proposer
from lionfs_ros.model.thinking_template import ThinkingInputs, ThinkingTemplate, TokenAccounting, build_thinking_inputs

from .config import EngineConfig
from .context import ContextFork
from .lm_state import DynamicLMState, LMState
from .timing import now
from .types import Region

OnText = Callable[[str, int], None]
"""``(text so far, tokens so far)``: called as tokens are generated."""


@dataclass
class SlowThinkRequest:
    keyframes: list[tuple[np.ndarray, float]]  # (RGB [H, W, 3] uint8, time), oldest first; last = trigger
    context: list[tuple[str, str]]  # (role, text): ("system", prompt) then the dialogue before this turn
    query: str | None = None
    max_new_tokens: int = 64
    turn_index: int = 0
    # In-process only (a remote thinker never sees these):
    fork: ContextFork | None = None  # the engine's context at the trigger (question already in it)
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class SlowThinkResult:
    text: str
    num_tokens: int
    truncated: bool  # stopped at max_new_tokens, not at EOS
    time_to_first_token: float  # seconds from the call to the first token
    tokens_per_second: float  # decoding speed after the first token
    token_ids: list[int] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)  # all keyframes' regions, oldest keyframe first
    prompt_tokens: int = 0
    accounting: TokenAccounting | None = None
    cancelled: bool = False
    keep_empty: bool = False  # the model's stream.commit is 'generated': an empty answer still enters the context


def greedy(logits: torch.Tensor) -> int:
    """Logits ``[V]`` -> the most likely next token, read back to the host (a ``LMState.feed`` readout)."""
    return int(logits.argmax())


class SlowThinker(ABC):
    @abstractmethod
    def generate(self, request: SlowThinkRequest, on_text: OnText) -> SlowThinkResult:
        """Write the answer; call ``on_text`` with the text so far as it grows; may raise (the engine reports it)."""


StateFactory = Callable[[], LMState]


class LocalSlowThinker(SlowThinker):
    def __init__(
        self,
        model,
        config: EngineConfig | None = None,
        *,
        proposer: RegionProposer | None = None,
        template: ThinkingTemplate | None = None,
        new_state: StateFactory | None = None,
    ):
        self.model = model
        self.cfg = (config or EngineConfig()).for_model(model)
        self.proposer = proposer or make_proposer(self.cfg.regions)
        self.template = template or ThinkingTemplate()
        self.new_state = new_state or (lambda: DynamicLMState(model))
        self._vocab = len(model.tokenizer)

    def thinks(self, request: SlowThinkRequest) -> bool:
        """Whether this answer gets the thinking template (see ``EngineConfig.slow_path``)."""
        if self.cfg.slow_path == "auto":
            return self.model.config.thinking.thinks_before(question=request.query is not None)
        return self.cfg.slow_path == "on"

    def decode(self, ids: list[int]) -> str:
        # Ids past the tokenizer (a backbone with a larger embedding table) have no text.
        return self.model.tokenizer.decode([i for i in ids if i < self._vocab], skip_special_tokens=True).strip()

    def prompt(self, request: SlowThinkRequest) -> ThinkingInputs:
        """What is fed before the answer: the template on the fork (or the whole portable prompt); a model
        trained with ``thinking.question: after`` gets the question restated after the template, as in training."""
        fork = request.fork
        think = self.thinks(request)
        restate = request.query if think and self.model.config.thinking.restates_question else None
        return build_thinking_inputs(
            self.model, [rgb for rgb, _ in request.keyframes], context=None if fork else request.context,
            query=None if fork else request.query, after_stream=fork.after_stream if fork else True,
            config=self.cfg.keyframes, template=self.template, proposer=self.proposer, think=think, restate=restate,
            asked=request.query,
        )

    @torch.no_grad()
    def generate(self, request: SlowThinkRequest, on_text: OnText) -> SlowThinkResult:
        start = now()
        fork = request.fork
        inputs = self.prompt(request)
        state = fork.state if fork else self.new_state()
        try:
            if fork is not None and fork.header is not None and not self.thinks(request):
                token = state.feed(fork.header, readout=greedy)  # a rendered question's last token opens the answer
            else:
                token = state.feed(inputs.input_ids.tolist(), inputs.embeds, inputs.visual_mask, readout=greedy)
            ids, first, last, truncated = self._decode_loop(state, token, request, on_text)
        finally:
            if not fork:
                state.release()
        count = len(ids)
        speed = (count - 1) / (last - first) if count > 1 and last > first else 0.0
        return SlowThinkResult(
            text=self.decode(ids), num_tokens=count, truncated=truncated,
            time_to_first_token=(first - start) if count else now() - start, tokens_per_second=speed,
            token_ids=ids, regions=[r for rs in inputs.regions for r in rs],
            prompt_tokens=int(inputs.input_ids.numel()), accounting=inputs.accounting,
            cancelled=request.cancel.is_set(), keep_empty=self.model.config.stream.commit == "generated",
        )

    def _decode_loop(self, state: LMState, token: int, request: SlowThinkRequest, on_text: OnText):
        """Greedy decoding from the prompt's most likely next ``token``."""
        eos = self.model.token_ids.eos
        limit = request.max_new_tokens or self.cfg.max_new_tokens
        ids: list[int] = []
        first = last = 0.0
        truncated = True
        for step in range(limit):
            if step == 0:
                first = now()
            if token == eos and self.cfg.stop_on_eos:
                truncated = False
                break
            ids.append(token)
            last = now()
            if len(ids) % self.cfg.partial_every_tokens == 0:
                on_text(self.decode(ids), len(ids))
            if request.cancel.is_set():
                truncated = False
                break
            if step + 1 < limit:
                token = state.feed([token], readout=greedy)
        return ids, first, last, truncated
