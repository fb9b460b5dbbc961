"""The report's two plots as inline SVG: no plotting dependency, crisp at any zoom, text searchable.

Colours are fixed constants (the HTML test finds the markers by colour in a screenshot).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

TRUTH_COLOUR = "#1565c0"
RESPONSE_COLOUR = "#e65100"
MATCH_COLOUR = "#2e7d32"
WINDOW_COLOUR = "#bbdefb"
HISTOGRAM_COLOUR = "#6a1b9a"
PLOT_BACKGROUND = "#f7f9fc"
AXIS_COLOUR = "#607d8b"

MARKER_RADIUS = 6
LABEL_CHARS = 38  # longer texts are cut in the plot; the whole text is in the tooltip and the table
LABEL_ROW_HEIGHT = 15
LABEL_ROWS = 4  # staggered rows so neighbouring labels do not overlap
CHAR_WIDTH_PX = 6.2  # 11 px sans-serif, for placing labels
PX_PER_SECOND = 60
MIN_PLOT_WIDTH, MAX_PLOT_WIDTH = 880, 8000
MARGIN_LEFT, MARGIN_RIGHT = 90, 30
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class TimelineItem:
    time: float
    text: str
    matched_time: float | None = None  # for a response: the truth it was matched to


def _nice_step(span: float, target_ticks: int = 10) -> float:
    raw = max(span, 1e-9) / target_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _labels(items: list[TimelineItem], x_of, base_y: float, direction: int, colour: str) -> list[str]:
    """Labels in staggered rows: each goes to the first row where it does not overlap the previous one."""
    row_ends = [-math.inf] * LABEL_ROWS
    parts = []
    for item in sorted(items, key=lambda i: i.time):
        x = x_of(item.time)
        label = _short(item.text)
        width = len(label) * CHAR_WIDTH_PX
        row = next((r for r in range(LABEL_ROWS) if row_ends[r] < x - 2), None)
        if row is None:
            continue  # too crowded here: the marker and tooltip still show it
        row_ends[row] = x + width
        y = base_y + direction * (row + 1) * LABEL_ROW_HEIGHT
        parts.append(f'<line x1="{x:.1f}" y1="{base_y:.1f}" x2="{x:.1f}" y2="{y - direction * 10:.1f}" '
                     f'stroke="{colour}" stroke-width="0.6" stroke-dasharray="2,2"/>')
        parts.append(f'<text x="{x + 2:.1f}" y="{y:.1f}" font-size="11" fill="{colour}">{escape(label)}</text>')
    return parts


def timeline_svg(duration_s: float, truth: list[TimelineItem], responses: list[TimelineItem],
                 tolerance_s: float | None) -> str:
    """Truth (top lane) and responses (bottom lane) over the video, matches joined, tolerance shaded."""
    times = [i.time for i in truth + responses] + [duration_s, 0.0]
    t_min, t_max = min(0.0, min(times)), max(times)
    span = max(t_max - t_min, 1.0)
    plot_width = min(max(span * PX_PER_SECOND, MIN_PLOT_WIDTH), MAX_PLOT_WIDTH)
    width = MARGIN_LEFT + plot_width + MARGIN_RIGHT
    label_band = LABEL_ROWS * LABEL_ROW_HEIGHT + 8
    truth_y, response_y = label_band + 20, label_band + 90
    axis_y = response_y + 28
    height = axis_y + label_band + 34

    def x_of(t: float) -> float:
        return MARGIN_LEFT + (t - t_min) / span * plot_width

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{width:.0f}" height="{height:.0f}" '
             f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif">',
             f'<rect id="timeline-plot" x="{MARGIN_LEFT}" y="{truth_y - 30}" width="{plot_width:.1f}" '
             f'height="{axis_y - truth_y + 30}" fill="{PLOT_BACKGROUND}"/>',
             f'<text x="8" y="{truth_y + 4}" font-size="12" fill="{TRUTH_COLOUR}">truth</text>',
             f'<text x="8" y="{response_y + 4}" font-size="12" fill="{RESPONSE_COLOUR}">assistant</text>']
    if tolerance_s:
        for item in truth:
            x0 = max(x_of(item.time - tolerance_s), MARGIN_LEFT)
            x1 = min(x_of(item.time + tolerance_s), MARGIN_LEFT + plot_width)
            parts.append(f'<rect x="{x0:.1f}" y="{truth_y - 10}" width="{x1 - x0:.1f}" '
                         f'height="{response_y - truth_y + 20}" fill="{WINDOW_COLOUR}" opacity="0.45"/>')
    step = _nice_step(span)
    tick = math.ceil(t_min / step) * step
    while tick <= t_max + 1e-9:
        x = x_of(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{truth_y - 30}" x2="{x:.1f}" y2="{axis_y}" stroke="#e0e6ee"/>')
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 14}" font-size="10" text-anchor="middle" '
                     f'fill="{AXIS_COLOUR}">{tick:g} s</text>')
        tick += step
    parts.append(f'<line x1="{MARGIN_LEFT}" y1="{axis_y}" x2="{MARGIN_LEFT + plot_width:.1f}" y2="{axis_y}" '
                 f'stroke="{AXIS_COLOUR}"/>')
    for lane_y in (truth_y, response_y):
        parts.append(f'<line x1="{MARGIN_LEFT}" y1="{lane_y}" x2="{MARGIN_LEFT + plot_width:.1f}" y2="{lane_y}" '
                     f'stroke="#cfd8dc"/>')
    for item in responses:
        if item.matched_time is not None:
            parts.append(f'<line x1="{x_of(item.matched_time):.1f}" y1="{truth_y}" x2="{x_of(item.time):.1f}" '
                         f'y2="{response_y}" stroke="{MATCH_COLOUR}" stroke-width="2"/>')
    for items, lane_y, colour, cls in ((truth, truth_y, TRUTH_COLOUR, "truth"),
                                       (responses, response_y, RESPONSE_COLOUR, "response")):
        for item in items:
            parts.append(f'<circle class="{cls}" cx="{x_of(item.time):.1f}" cy="{lane_y}" r="{MARKER_RADIUS}" '
                         f'fill="{colour}"><title>{item.time:.2f} s: {escape(item.text)}</title></circle>')
    parts += _labels(truth, x_of, truth_y - 10, -1, TRUTH_COLOUR)
    parts += _labels(responses, x_of, axis_y + 16, 1, RESPONSE_COLOUR)
    parts.append("</svg>")
    return "\n".join(parts)


def histogram_svg(values: list[float], title: str, unit_scale: float = 1000.0, unit: str = "ms") -> str:
    """Bars of `values` (seconds) in HISTOGRAM_BINS bins, shown in `unit`."""
    width, height, left, bottom, top = 640, 240, 56, 40, 24
    plot_w, plot_h = width - left - 40, height - bottom - top  # room for the last axis label
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="histogram" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
             f'<text x="{left}" y="16" font-size="12" fill="#263238">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="{PLOT_BACKGROUND}"/>']
    if not values:
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" font-size="12" text-anchor="middle" '
                     f'fill="{AXIS_COLOUR}">no measurements</text></svg>')
        return "\n".join(parts)
    scaled = [v * unit_scale for v in values]
    low, high = min(scaled), max(scaled)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    bin_width = (high - low) / HISTOGRAM_BINS
    counts = [0] * HISTOGRAM_BINS
    for v in scaled:
        counts[min(int((v - low) / bin_width), HISTOGRAM_BINS - 1)] += 1
    peak = max(counts)
    bar_w = plot_w / HISTOGRAM_BINS
    for i, count in enumerate(counts):
        if count:
            bar_h = count / peak * (plot_h - 4)
            parts.append(f'<rect x="{left + i * bar_w + 1:.1f}" y="{top + plot_h - bar_h:.1f}" width="{bar_w - 2:.1f}" '
                         f'height="{bar_h:.1f}" fill="{HISTOGRAM_COLOUR}"><title>{low + i * bin_width:.1f}-'
                         f'{low + (i + 1) * bin_width:.1f} {unit}: {count}</title></rect>')
    for fraction in (0.0, 0.5, 1.0):
        x = left + fraction * plot_w
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" font-size="10" text-anchor="middle" '
                     f'fill="{AXIS_COLOUR}">{low + fraction * (high - low):.1f} {unit}</text>')
    parts.append(f'<text x="{left - 6}" y="{top + 10}" font-size="10" text-anchor="end" fill="{AXIS_COLOUR}">{peak}</text>')
    parts.append(f'<text x="{left - 6}" y="{top + plot_h}" font-size="10" text-anchor="end" fill="{AXIS_COLOUR}">0</text>')
    parts.append("</svg>")
    return "\n".join(parts)
