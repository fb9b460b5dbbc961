"""Triggers against the truth: which response answers which true narration, within a time window.

A response at `p` may answer a truth at `t` when `-early_s <= p - t <= late_s`. Each response and
each truth is used at most once. Among the matchings with the most pairs we take the one with the
smallest total |p - t|. On a line such an optimum never crosses (two crossing pairs can be swapped
without leaving the window or adding error), so a sequence-alignment DP over both lists, sorted
by time, finds it exactly; greedy nearest-first does not.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class MatchWindow:
    early_s: float  # how long before the truth a response may come and still count
    late_s: float  # how long after

    def allows(self, delta_s: float) -> bool:
        return -self.early_s <= delta_s <= self.late_s


@dataclass(frozen=True)
class MatchedPair:
    response_index: int
    truth_index: int
    delta_s: float  # response time - truth time (negative: early)


@dataclass
class TriggerScores:
    window: MatchWindow
    num_responses: int
    num_truth: int
    pairs: list[MatchedPair] = field(default_factory=list)

    @property
    def matched(self) -> int:
        return len(self.pairs)

    @property
    def precision(self) -> float | None:  # None: no response, so precision is undefined
        return self.matched / self.num_responses if self.num_responses else None

    @property
    def recall(self) -> float | None:
        return self.matched / self.num_truth if self.num_truth else None

    @property
    def f1(self) -> float | None:
        """None without truth; 0 when nothing matched (also when nothing was said)."""
        if not self.num_truth:
            return None
        if not self.matched:
            return 0.0
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r)

    @property
    def time_diff_s(self) -> float | None:
        """Mean |response - truth| over matched pairs (free-running TimeDiff)."""
        return statistics.fmean(abs(p.delta_s) for p in self.pairs) if self.pairs else None

    @property
    def time_diff_median_s(self) -> float | None:
        return statistics.median(abs(p.delta_s) for p in self.pairs) if self.pairs else None

    @property
    def mean_offset_s(self) -> float | None:
        """Signed mean of response - truth: negative means the assistant tends to speak early."""
        return statistics.fmean(p.delta_s for p in self.pairs) if self.pairs else None

    def to_dict(self) -> dict:
        return {"window": asdict(self.window), "num_responses": self.num_responses, "num_truth": self.num_truth,
                "matched": self.matched, "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "time_diff_s": self.time_diff_s, "time_diff_median_s": self.time_diff_median_s,
                "mean_offset_s": self.mean_offset_s, "pairs": [asdict(p) for p in self.pairs]}


def match_triggers(response_times: list[float], truth_times: list[float], window: MatchWindow) -> TriggerScores:
    """Maximum matching, then least total |delta|; indices in the result refer to the input lists."""
    responses = sorted(range(len(response_times)), key=lambda i: response_times[i])
    truths = sorted(range(len(truth_times)), key=lambda j: truth_times[j])
    n, m = len(responses), len(truths)
    # best[i][j]: (pairs, -total error) using the first i responses and first j truths (sorted).
    best = [[(0, 0.0)] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        p = response_times[responses[i - 1]]
        row, previous = best[i], best[i - 1]
        for j in range(1, m + 1):
            candidate = max(previous[j], row[j - 1])
            delta = p - truth_times[truths[j - 1]]
            if window.allows(delta):
                count, neg_error = previous[j - 1]
                candidate = max(candidate, (count + 1, neg_error - abs(delta)))
            row[j] = candidate
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        if best[i][j] == best[i - 1][j]:
            i -= 1
        elif best[i][j] == best[i][j - 1]:
            j -= 1
        else:
            r, t = responses[i - 1], truths[j - 1]
            pairs.append(MatchedPair(r, t, response_times[r] - truth_times[t]))
            i, j = i - 1, j - 1
    pairs.sort(key=lambda pair: truth_times[pair.truth_index])
    return TriggerScores(window, n, m, pairs)
