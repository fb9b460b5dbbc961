"""report.json: every number of a replay, machine-readable, with the definitions beside them."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from lionfs_ros import __version__

REPORT_FORMAT = "lionfs-replay-report"
REPORT_VERSION = 1
REPORT_JSON = "report.json"

DEFINITIONS = {
    "times": "video time: seconds from the first decoded frame, on the frames' clock (header stamps, or log "
             "times for unstamped drivers)",
    "triggers": "a response at p matches a truth at t when -window.early_s <= p - t <= window.late_s; one to one, "
                "most pairs then least total |p - t|; precision = matched / responses, recall = matched / truth",
    "time_diff_s": "mean |p - t| over matched pairs (free-running; stream.time_diff is VideoLLM-online's "
                   "teacher-forced TimeDiff)",
    "text": "matched pairs only: corpus chrF and BLEU (sacrebleu, 0-100), mean ROUGE-L F (0-1, LCS of "
            "lower-cased words), exact match after dropping case and punctuation",
    "stream": "teacher-forced LM-PPL / TimeDiff / Fluency / LM-Correctness (VideoLLM-online stream_evaluate) on "
              "the bag's frames with the truth as the assistant turns; deterministic mode with truth only",
    "latency.end_to_end": "live: from publishing the triggering frame to receiving the final assistant message "
                          "(image stamp -> message on the wire); deterministic: from handing the triggering frame "
                          "to the engine to its final text (compute only)",
    "latency.first_message": "as end_to_end, to the first (partial) message of the turn",
    "latency.decision": "fast thinker per frame (deterministic) or per response as the assistant reports it (live)",
    "frames": "fed: frames given to the assistant; received: frames the node counted (live); dropped_transport = "
              "fed - received; dropped_engine: frames the engine skipped under load",
    "memory": "peak resident memory (VmHWM / ru_maxrss) of the process running the model; GPU: torch peak "
              "allocated",
}


@dataclass
class ReplayReport:
    mode: str
    model: str
    bag: dict
    image_topic: str | None
    settings: dict
    frames: dict
    truth: dict | None
    responses: list[dict]
    metrics: dict
    status: dict  # {"complete": bool, "error": str | None}
    notes: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def to_dict(self) -> dict:
        return {"format": REPORT_FORMAT, "version": REPORT_VERSION, "tool": f"lionfs_ros {__version__}",
                "created": self.created, "mode": self.mode, "model": self.model, "bag": self.bag,
                "image_topic": self.image_topic, "settings": self.settings, "status": self.status,
                "frames": self.frames, "truth": self.truth, "metrics": self.metrics, "responses": self.responses,
                "notes": self.notes, "definitions": DEFINITIONS}

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / REPORT_JSON
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
        tmp.replace(path)  # a reader never sees half a report
        return path


class ReportFormatError(ValueError):
    """A file is not a replay report this version understands."""


def load_report(path: Path) -> dict:
    """A report.json as a dict (a report directory works too), checked for format and version."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_JSON
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportFormatError(f"{path}: no such report") from None
    except ValueError as err:
        raise ReportFormatError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(document, dict) or document.get("format") != REPORT_FORMAT:
        raise ReportFormatError(f"{path}: not a lionfs replay report (format {document.get('format')!r})"
                                if isinstance(document, dict) else f"{path}: not a lionfs replay report")
    if document.get("version", 0) > REPORT_VERSION:
        raise ReportFormatError(f"{path}: report version {document['version']} is newer than this tool "
                                f"({REPORT_VERSION}); update lionfs_ros")
    return document
