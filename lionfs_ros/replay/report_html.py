"""report.html: one self-contained page a person opens (plots inline, keyframes embedded)."""
from __future__ import annotations

import json
from html import escape
from pathlib import Path

from lionfs_ros.replay.svg_plots import TimelineItem, histogram_svg, timeline_svg

REPORT_HTML = "report.html"

STYLE = """
body { font-family: sans-serif; margin: 16px 24px; color: #263238; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.sub { color: #607d8b; font-size: 13px; }
.banner { background: #ffebee; border: 1px solid #c62828; color: #b71c1c; padding: 8px 12px; margin: 10px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 8px; margin: 12px 0; }
.card { border: 1px solid #cfd8dc; border-radius: 4px; padding: 6px 10px; min-width: 96px; }
.card .v { font-size: 18px; font-weight: bold; } .card .k { font-size: 11px; color: #607d8b; }
.scroll { overflow-x: auto; border: 1px solid #eceff1; }
table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #cfd8dc; padding: 4px 6px;
vertical-align: top; text-align: left; } th { background: #eceff1; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } .miss { color: #b71c1c; }
img.key { width: 160px; image-rendering: auto; display: block; }
.kf { position: relative; display: inline-block; }
.kf span { position: absolute; border: 2px solid #ff1744; box-sizing: border-box; }
.kf span b { position: absolute; left: 0; top: -1px; font-size: 9px; color: #fff; background: #ff1744; }
pre { background: #f5f5f5; padding: 8px; font-size: 12px; overflow-x: auto; }
"""


def _fmt(value, digits: int = 3, scale: float = 1.0, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value * scale:.{digits}g}{suffix}" if isinstance(value, float) else f"{value}{suffix}"
    return escape(str(value))


def _cards(report: dict) -> str:
    metrics = report["metrics"]
    triggers, text = metrics.get("triggers") or {}, metrics.get("text") or {}
    latency, frames, memory = metrics["latency"], metrics["frames"], metrics["memory"]
    stream = metrics.get("stream") or {}
    qa = (metrics.get("qa") or {}).get("accuracy", {}).get("all") or {}
    cards = [
        ("responses", len(report["responses"])), ("truth", triggers.get("num_truth")),
        ("precision", _fmt(triggers.get("precision"))), ("recall", _fmt(triggers.get("recall"))),
        ("F1", _fmt(triggers.get("f1"))), ("TimeDiff", _fmt(triggers.get("time_diff_s"), suffix=" s")),
        ("chrF", _fmt(text.get("chrf"))), ("ROUGE-L", _fmt(text.get("rouge_l"))),
        ("LM-PPL", _fmt(stream.get("lm_ppl"))), ("Fluency", _fmt(stream.get("fluency"))),
        ("LM-Correctness", _fmt(stream.get("lm_correctness"))), ("QA", _fmt(qa.get("accuracy"))),
        ("latency p50", _fmt(latency["end_to_end"]["p50_s"], scale=1000, suffix=" ms")),
        ("latency p99", _fmt(latency["end_to_end"]["p99_s"], scale=1000, suffix=" ms")),
        ("frames dropped", _fmt(frames.get("dropped_total"))),
        ("peak memory", _fmt(memory.get("rss_mib"), digits=4, suffix=" MiB")),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{v if v is not None else "–"}</div><div class="k">{escape(k)}</div></div>'
        for k, v in cards) + "</div>"


def _timeline(report: dict) -> str:
    truth = report.get("truth") or {"events": []}
    events = truth["events"]
    items_truth = [TimelineItem(e["time"], e["text"]) for e in events]
    items_resp = [TimelineItem(r["trigger_time"], r["text"] or "(empty)",
                               events[r["truth_index"]]["time"] if r.get("truth_index") is not None else None)
                  for r in report["responses"]]
    window = ((report["metrics"].get("triggers") or {}).get("window") or {}).get("late_s")
    return timeline_svg(report["frames"].get("duration_s") or 0.0, items_truth, items_resp, window)


def _keyframe(uri: str, response: dict) -> str:
    """The trigger frame's thumbnail with the slow thinker's regions drawn on it (boxes in percent)."""
    boxes = "".join(
        f'<span class="region" title="{escape(str(g["label"]))} {g["score"]:.2f}" style="left:{100 * g["x0"]:.1f}%;'
        f'top:{100 * g["y0"]:.1f}%;width:{100 * (g["x1"] - g["x0"]):.1f}%;height:{100 * (g["y1"] - g["y0"]):.1f}%">'
        f'<b>{escape(str(g["label"]))}</b></span>' for g in response.get("regions") or ())
    return f'<div class="kf"><img class="key" src="{uri}" alt="keyframe {response.get("frame_index")}">{boxes}</div>'


def _responses_table(report: dict, thumbnails: dict[int, str]) -> str:
    rows = []
    for i, r in enumerate(report["responses"]):
        uri = thumbnails.get(r.get("frame_index"))
        image = _keyframe(uri, r) if uri else "–"
        score = r.get("text_score") or {}
        truth = escape(r["truth_text"]) if r.get("truth_text") else '<span class="miss">no match</span>'
        if r.get("query"):  # an answer: scored under Questions
            truth = f'<i>answers</i> {escape(r["query"])}'
        final = "" if r["is_final"] else " <i>(unfinished)</i>"
        rows.append(
            f"<tr><td class=num>{i}</td><td class=num>{r['trigger_time']:.2f}</td><td>{image}</td>"
            f"<td>{escape(r['text'])}{final}</td><td>{truth}</td><td class=num>{_fmt(r.get('delta_s'), suffix=' s')}</td>"
            f"<td class=num>{_fmt(score.get('chrf'))}</td><td class=num>{_fmt(score.get('rouge_l'))}</td>"
            f"<td class=num>{_fmt(r.get('latency_s'), scale=1000, suffix=' ms')}</td>"
            f"<td class=num>{_fmt(r.get('score'))}</td></tr>")
    header = ("<tr><th>#</th><th>time (s)</th><th>keyframe</th><th>assistant</th><th>matched truth</th><th>Δt</th>"
              "<th>chrF</th><th>ROUGE-L</th><th>latency</th><th>trigger score</th></tr>")
    return f'<table id="responses">{header}{"".join(rows)}</table>' if rows else "<p>No responses.</p>"


def _questions_table(report: dict) -> str:
    """The bag's questions (``metrics["qa"]``): each with its true answer and the assistant's."""
    qa = report["metrics"].get("qa")
    if not qa:
        return "<p>No questions in the bag (or no true answers to score them).</p>"
    rows = [f"<tr><td>{escape(q['question'])}</td><td>{escape(q['kind'] or '')}</td><td>{escape(q['truth'])}</td>"
            f"<td>{escape(q['answer']) if q['answered'] else '<span class=miss>no answer</span>'}</td>"
            f"<td>{'yes' if q['correct'] else '<span class=miss>no</span>'}</td></tr>" for q in qa["questions"]]
    by_kind = ", ".join(f"{escape(kind)} {v['accuracy']:.3f} of {v['count']}" for kind, v in qa["accuracy"].items())
    return (f"<p>QA: {by_kind}</p><table id=\"questions\"><tr><th>question</th><th>kind</th><th>true answer</th>"
            f"<th>assistant</th><th>right</th></tr>{''.join(rows)}</table>")


def _missed_table(report: dict) -> str:
    truth = report.get("truth")
    if not truth:
        return "<p>No ground truth: outputs and timing only.</p>"
    matched = {r.get("truth_index") for r in report["responses"]}
    rows = [f"<tr><td class=num>{e['time']:.2f}</td><td>{escape(e['text'])}</td><td>{escape(e.get('kind') or '')}</td></tr>"
            for i, e in enumerate(truth["events"]) if i not in matched]
    if not rows:
        return "<p>Every true narration was answered.</p>"
    return f"<table><tr><th>time (s)</th><th>missed narration</th><th>kind</th></tr>{''.join(rows)}</table>"


def render_html(report: dict, thumbnails: dict[int, str]) -> str:
    status = report["status"]
    bag = report["bag"]
    banner = f'<div class="banner" id="error">{escape(status["error"])} — this report covers only what was read.</div>' \
        if status.get("error") else ""
    latency = [r["latency_s"] for r in report["responses"] if r.get("latency_s") is not None]
    first = [r["first_latency_s"] for r in report["responses"] if r.get("first_latency_s") is not None]
    details = {k: report["metrics"][k] for k in ("frames", "memory", "timing", "latency", "stream")}
    details["text"] = report["metrics"].get("text")
    details["settings"] = report["settings"]
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.get("notes", []))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lionfs replay: {escape(Path(bag['path']).name)}</title>
<style>{STYLE}</style></head><body>
<h1>lionfs replay — {escape(Path(bag['path']).name)}</h1>
<div class="sub">mode <b>{escape(report['mode'])}</b> · model {escape(report['model'])} · topic
{escape(report.get('image_topic') or '–')} · {report['frames']['decoded']} frames, {report['frames']['duration_s']:.1f} s ·
{escape(bag['storage'])} · truth: {escape((report.get('truth') or {}).get('source', 'none'))} · {escape(report['created'])}</div>
{banner}
<h2>Timeline</h2>
<div class="scroll">{_timeline(report)}</div>
{_cards(report)}
<h2>Latency</h2>
{histogram_svg(latency, "end to end: triggering frame -> final message")}
{histogram_svg(first, "triggering frame -> first message")}
<h2>Responses</h2>
{_responses_table(report, thumbnails)}
<h2>Questions</h2>
{_questions_table(report)}
<h2>Missed narrations</h2>
{_missed_table(report)}
<h2>Details</h2>
{'<ul>' + notes + '</ul>' if notes else ''}
<pre>{escape(json.dumps(details, indent=2))}</pre>
</body></html>
"""


def write_html(report: dict, thumbnails: dict[int, str], directory: Path) -> Path:
    path = directory / REPORT_HTML
    path.write_text(render_html(report, thumbnails), encoding="utf-8")
    return path
