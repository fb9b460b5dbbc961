"""The order of the trigger keyframe's regions in the slow thinker's template (``keyframes.region_order``).

With ``question_last`` the region a question is about is laid out last among the trigger keyframe's regions, so its
tag (`` cyan bottle labelled OIL``) sits a few tokens before the answer: the LLM copies the label from there instead
of finding which of several tags the question means (a lookup the demo's 4-layer LLM did not learn; a local copy it
did, docs/RESULTS.md round 14). Which region: at run time the one whose tag shares the most words with the question
(``question_match``: colour, shape and part names are what a question about an object and the reader's tag of it
share), in training the one holding the asked object (``train.thinking``: the synthetic world knows it).
"""
from __future__ import annotations

import re
from typing import Sequence, TypeVar

T = TypeVar("T")
WORD = re.compile(r"[a-z0-9]+")
MIN_WORD = 3  # shorter words ("a", "on", "of", "is") say nothing about which object is meant


def words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if len(w) >= MIN_WORD}


def question_match(question: str, tag: str) -> int:
    """How many distinct words of at least ``MIN_WORD`` letters the question and a region's tag share."""
    return len(words(question) & words(tag))


def matched_index(question: str, tags: Sequence[str]) -> int | None:
    """The index of the tag that shares the most words with the question (the first of equals), or None when none
    shares any."""
    scores = [question_match(question, tag) for tag in tags]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i), default=None)
    return best if best is not None and scores[best] > 0 else None


def asked_last(candidates: Sequence[T], index: int | None, keep: int) -> list[T]:
    """The ``keep`` regions laid out from the proposer's ``candidates`` (best first) with ``candidates[index]`` last:
    moved there when it is one of the first ``keep``, else in the last place after the first ``keep - 1``
    (``keyframes.question_candidates``); ``index`` None: the first ``keep`` as proposed."""
    if index is None or index < keep:
        return moved_last(candidates[:keep], index)
    return list(candidates[:keep - 1]) + [candidates[index]]


def moved_last(items: Sequence[T], index: int | None) -> list[T]:
    """``items`` with ``items[index]`` moved to the end, the others in their order (``index`` None: unchanged)."""
    items = list(items)
    return items if index is None else items[:index] + items[index + 1:] + [items[index]]
