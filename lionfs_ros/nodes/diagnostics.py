"""/diagnostics messages from plain dicts of measurements."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

DIAGNOSTICS_TOPIC = "/diagnostics"
LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR,
          "stale": DiagnosticStatus.STALE}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def diagnostic_array(stamp, name: str, hardware_id: str, level: str, message: str, values: dict) -> DiagnosticArray:
    status = DiagnosticStatus(
        level=LEVELS[level], name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=key, value=_fmt(value)) for key, value in values.items()])
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])
