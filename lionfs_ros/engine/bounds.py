"""Token bounds of everything the engine feeds, from the model's stream format and the engine config."""
from __future__ import annotations

from lionfs_ros.model.thinking_template import ThinkingTemplate, thinking_token_bound

from .config import EngineConfig, TokenBounds

ANSWER_EXTRA = 2  # the body's leading separator and EOS


def token_bounds(model, cfg: EngineConfig) -> TokenBounds:
    fmt = model.formatter
    return TokenBounds(
        system=len(fmt.system_ids(cfg.system_prompt)),
        frame=len(fmt.stream_open_ids()) + model.tokens_per_frame + 1,
        query=len(fmt.user_ids("", after_stream=True)) + cfg.max_query_tokens,
        answer=len(fmt.assistant_header_ids(after_stream=True)) + cfg.max_new_tokens + ANSWER_EXTRA,
        thinking=thinking_token_bound(model, _keyframes(model, cfg), ThinkingTemplate(), _restated_question(model, cfg)),
    )


def _restated_question(model, cfg: EngineConfig) -> int:
    """Most tokens of the question restated after the template (``thinking.question: after``), else 0."""
    if not model.config.thinking.restates_question:
        return 0
    return len(model.formatter.user_ids("", after_stream=False)) + cfg.max_query_tokens


def portable_prompt_bound(model, cfg: EngineConfig) -> int:
    """Most tokens a prompt built from portable fields takes, for dialogues the engine itself produces."""
    b = token_bounds(model, cfg)
    frames = _keyframes(model, cfg).num_keyframes * (model.tokens_per_frame + 1) + len(model.formatter.stream_open_ids())
    return b.system + cfg.context_turns * max(b.query, b.answer) + frames + b.query + b.thinking


def _keyframes(model, cfg: EngineConfig):
    """The keyframe settings the engine uses: its override, else the model's."""
    return cfg.keyframes or model.config.thinking.keyframes
