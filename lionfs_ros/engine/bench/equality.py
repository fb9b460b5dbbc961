"""The bench's equality checks: an engine variant against the naive loop (the model's own function, same frames and
prompt), and an FP8 variant against its bf16 twin (same frames)."""
from __future__ import annotations

import numpy as np


def twin_equality(decisions: list, twin_decisions: list, twin: str) -> dict:
    """An FP8 variant's decisions against its bf16 twin's, frame by frame (the same frames)."""
    pairs = list(zip(decisions, twin_decisions))
    return {"variant": twin, "frames_compared": len(pairs),
            "decisions_equal": sum(a.respond == b.respond for a, b in pairs),
            "next_token_equal": sum(a.next_token == b.next_token for a, b in pairs),
            "max_abs_p_interval_diff": max((abs(a.p_interval - b.p_interval) for a, b in pairs), default=None)}


def no_equality(variant: dict) -> dict:
    for key in ("_decisions", "_tokens", "_prompt_ids"):
        variant.pop(key)
    variant["equality"] = "not compared: the naive loop runs the model with token dropping, this variant without"
    return variant


def naive_equality(variant: dict, naive: dict, model) -> dict:
    decisions, tokens, prompt_ids = variant.pop("_decisions"), variant.pop("_tokens"), variant.pop("_prompt_ids")
    frames = naive["frames"]
    interval = model.token_ids.interval
    p_engine = np.array([d.p_interval for d in decisions])
    p_naive = np.array([p for p, *_ in frames])
    mismatch = [margin for d, (p, top, margin, _) in zip(decisions, frames) if d.next_token != top]
    same = [d.respond == (p < model.config.stream.interval_threshold or top != interval)
            for d, (p, top, _, _) in zip(decisions, frames)]
    gen = naive["gen"]
    prefix = next((i for i, (a, b) in enumerate(zip(tokens, gen["ids"])) if a != b), min(len(tokens), len(gen["ids"])))
    variant["equality"] = {
        "frames_compared": len(decisions), "decisions_equal": int(sum(same)),
        "next_token_equal": len(decisions) - len(mismatch),
        "next_token_mismatch_max_naive_margin": max(mismatch) if mismatch else None,
        "max_abs_p_interval_diff": float(np.abs(p_engine - p_naive).max()),
        "same_prompt": prompt_ids == gen["prompt_ids"], "prompt_tokens": [len(prompt_ids), len(gen["prompt_ids"])],
        "generated_tokens_compared": len(gen["ids"]), "generated_tokens_equal_prefix": prefix,
        "naive_margin_at_first_difference": gen["margins"][prefix] if prefix < len(gen["margins"]) else None,
    }
    return variant
