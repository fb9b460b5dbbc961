"""`lionfs replay --compare A B`: two reports side by side (two models, two thresholds, two runs)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lionfs_ros.replay.report_json import load_report

HIGHER, LOWER = "higher", "lower"  # which direction is better; None: neither


@dataclass(frozen=True)
class Row:
    label: str
    path: tuple[str, ...]  # keys into the report dict
    scale: float = 1.0
    unit: str = ""
    better: str | None = None


ROWS = (
    Row("mode", ("mode",)), Row("model", ("model",)), Row("bag", ("bag", "path")),
    Row("frames decoded", ("frames", "decoded")), Row("video (s)", ("frames", "duration_s")),
    Row("complete", ("status", "complete")),
    Row("responses", ("metrics", "triggers", "num_responses")), Row("truth", ("metrics", "triggers", "num_truth")),
    Row("matched", ("metrics", "triggers", "matched"), better=HIGHER),
    Row("precision", ("metrics", "triggers", "precision"), better=HIGHER),
    Row("recall", ("metrics", "triggers", "recall"), better=HIGHER),
    Row("F1", ("metrics", "triggers", "f1"), better=HIGHER),
    Row("TimeDiff", ("metrics", "triggers", "time_diff_s"), unit=" s", better=LOWER),
    Row("mean offset", ("metrics", "triggers", "mean_offset_s"), unit=" s"),
    Row("chrF", ("metrics", "text", "chrf"), better=HIGHER),
    Row("BLEU", ("metrics", "text", "bleu"), better=HIGHER),
    Row("ROUGE-L", ("metrics", "text", "rouge_l"), better=HIGHER),
    Row("exact match", ("metrics", "text", "exact_match"), better=HIGHER),
    Row("LM-PPL", ("metrics", "stream", "lm_ppl"), better=LOWER),
    Row("stream TimeDiff", ("metrics", "stream", "time_diff"), unit=" s", better=LOWER),
    Row("Fluency", ("metrics", "stream", "fluency"), better=HIGHER),
    Row("LM-Correctness", ("metrics", "stream", "lm_correctness"), better=HIGHER),
    Row("latency p50", ("metrics", "latency", "end_to_end", "p50_s"), 1000, " ms", LOWER),
    Row("latency p99", ("metrics", "latency", "end_to_end", "p99_s"), 1000, " ms", LOWER),
    Row("first msg p50", ("metrics", "latency", "first_message", "p50_s"), 1000, " ms", LOWER),
    Row("decision p50", ("metrics", "latency", "decision", "p50_s"), 1000, " ms", LOWER),
    Row("decision p99", ("metrics", "latency", "decision", "p99_s"), 1000, " ms", LOWER),
    Row("frames fed", ("metrics", "frames", "fed")),
    Row("frames dropped", ("metrics", "frames", "dropped_total"), better=LOWER),
    Row("peak RSS", ("metrics", "memory", "rss_mib"), unit=" MiB", better=LOWER),
    Row("peak GPU", ("metrics", "memory", "gpu_mib"), unit=" MiB", better=LOWER),
    Row("wall time", ("metrics", "timing", "wall_s"), unit=" s", better=LOWER),
    Row("settings: tolerance", ("settings", "tolerance_s"), unit=" s"),
    Row("settings: threshold", ("settings", "threshold")),
    Row("settings: rate", ("settings", "rate")),
)


def _get(report: dict, path: tuple[str, ...]):
    value = report
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _cell(value, row: Row) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value * row.scale:.4g}{row.unit}"
    if isinstance(value, int):
        return f"{value}{row.unit}"
    text = str(value)
    return text if len(text) <= 40 else "…" + text[-39:]


def _delta(a, b, row: Row) -> str:
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if not numeric:
        return "" if a == b or a is None or b is None else "differs"
    diff = (b - a) * row.scale
    if diff == 0:
        return "="
    mark = ""
    if row.better:
        mark = "  better" if (diff > 0) == (row.better == HIGHER) else "  worse"
    return f"{diff:+.4g}{row.unit}{mark}"


def compare_reports(path_a: Path, path_b: Path) -> str:
    """The side-by-side table as text (B - A in the last column, 'better' / 'worse' where it has a direction)."""
    a, b = load_report(path_a), load_report(path_b)
    table = [("", f"A: {Path(path_a).name}", f"B: {Path(path_b).name}", "B - A")]
    for row in ROWS:
        va, vb = _get(a, row.path), _get(b, row.path)
        if va is None and vb is None:
            continue
        table.append((row.label, _cell(va, row), _cell(vb, row), _delta(va, vb, row)))
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
