"""report.html renders in headless Chromium: the timeline shows truth and responses where they belong."""
from __future__ import annotations

import shutil
import subprocess

import cv2
import numpy as np
import pytest

from lionfs_testing import REPO

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1280, 1000)
TRUTH_TIMES = (2.0, 8.0)
RESPONSE_TIMES = (2.4, 5.0, 8.5)  # the middle one answers nothing
DURATION_S = 10.0
COLOUR_TOLERANCE = 12  # per channel: the filled centre of a marker is exactly its colour
PIXEL_TOLERANCE = 3.0  # px: where a marker is against where its time says it must be


def _browser() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found:
        return found
    setup = subprocess.run(["bash", str(REPO / "scripts" / "setup-test-tools.sh")], capture_output=True, text=True)
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if not found:
        pytest.skip(f"chromium is not installed and could not be installed here: {setup.stderr.strip()}")
    return found


def _screenshot(html_path, out_png, tmp_path, window=WINDOW) -> np.ndarray:
    profile = tmp_path / "chromium-profile"
    command = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={out_png}",
               f"--window-size={window[0]},{window[1]}", html_path.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and out_png.exists(), result.stderr[-2000:]
    return cv2.cvtColor(cv2.imread(str(out_png)), cv2.COLOR_BGR2RGB)


def _mask(image: np.ndarray, hex_colour: str) -> np.ndarray:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], np.int16)
    return (np.abs(image.astype(np.int16) - rgb) <= COLOUR_TOLERANCE).all(axis=2)


def _marker_centres(mask: np.ndarray) -> list[float]:
    """x centres of the round markers: blobs of the colour about as wide as they are tall (text is not)."""
    from lionfs_ros.replay.svg_plots import MARKER_RADIUS

    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    centres = []
    for i in range(1, count):
        x, y, w, h, area = stats[i]
        if abs(w - h) <= 2 and 1.5 * MARKER_RADIUS <= w <= 2 * MARKER_RADIUS + 3 and area >= MARKER_RADIUS ** 2 * 2:
            centres.append(float(centroids[i][0]))
    return sorted(centres)


def _write_report(tmp_path, error: str | None = None, regions=(), thumbnails=None):
    from lionfs_ros.replay.bag_frames import FrameStats
    from lionfs_ros.replay.records import ResponseRecord, RunOutput
    from lionfs_ros.replay.pipeline import ReplaySettings, build_report
    from lionfs_ros.replay.report_html import write_html
    from lionfs_ros.replay.truth import TruthEvent, TruthTimeline

    truth = TruthTimeline([TruthEvent(t, f"You do thing {i}.") for i, t in enumerate(TRUTH_TIMES)], "test")
    responses = [ResponseRecord(i, t, f"You do thing {i}.", True, frame_index=i, latency_s=0.05 * (i + 1),
                                regions=list(regions)) for i, t in enumerate(RESPONSE_TIMES)]
    output = RunOutput(mode="deterministic", model="test", responses=responses)
    stats = FrameStats(decoded=81, origin_s=0.0, last_s=DURATION_S)
    settings = ReplaySettings(bag=tmp_path / "bag", report_dir=tmp_path / "r", tolerance_s=1.0)
    status = {"complete": error is None, "error": error}
    report = build_report(settings, {"path": "bag", "storage": "mcap"}, "/camera/image_raw", stats, truth, output,
                          status).to_dict()
    (tmp_path / "r").mkdir(exist_ok=True)
    return write_html(report, thumbnails or {}, tmp_path / "r"), report


def test_timeline_places_truth_and_responses_by_time(tmp_path):
    from lionfs_ros.replay.svg_plots import HISTOGRAM_COLOUR, MATCH_COLOUR, RESPONSE_COLOUR, TRUTH_COLOUR

    html, report = _write_report(tmp_path)
    assert [p["truth_index"] for p in report["metrics"]["triggers"]["pairs"]] == [0, 1]
    image = _screenshot(html, tmp_path / "report.png", tmp_path)
    truth_x = _marker_centres(_mask(image, TRUTH_COLOUR))
    response_x = _marker_centres(_mask(image, RESPONSE_COLOUR))
    assert len(truth_x) == len(TRUTH_TIMES) and len(response_x) == len(RESPONSE_TIMES), (truth_x, response_x)
    # The truth markers fix the time axis (x = offset + scale * t); every response must sit on it.
    scale = (truth_x[1] - truth_x[0]) / (TRUTH_TIMES[1] - TRUTH_TIMES[0])
    offset = truth_x[0] - scale * TRUTH_TIMES[0]
    assert scale > 30, "the timeline is drawn wide enough to read"
    for t, x in zip(RESPONSE_TIMES, response_x):
        assert abs(offset + scale * t - x) <= PIXEL_TOLERANCE, (t, x, offset, scale)
    assert _mask(image, MATCH_COLOUR).sum() > 50, "matched pairs are joined"
    assert _mask(image, HISTOGRAM_COLOUR).sum() > 200, "the latency histogram is drawn"


def test_partial_report_shows_its_error(tmp_path):
    html, _ = _write_report(tmp_path, error="bag damaged: truncated at byte 1234")
    image = _screenshot(html, tmp_path / "partial.png", tmp_path)
    banner = _mask(image, "#ffebee")  # the banner's background
    assert banner.sum() > 5000, "the error banner is visible at the top of the page"
    assert "bag damaged: truncated at byte 1234" in html.read_text()


def test_keyframe_thumbnails_show_the_slow_thinkers_regions(tmp_path):
    from lionfs_ros.replay.thumbnails import jpeg_data_uri

    box = {"x0": 0.5, "y0": 0.25, "x1": 1.0, "y1": 0.75, "label": "motion", "score": 0.9}
    grey = np.full((96, 128, 3), 128, np.uint8)
    html, report = _write_report(tmp_path, regions=[box], thumbnails={0: jpeg_data_uri(grey)})
    assert report["responses"][0]["regions"] == [box]
    image = _screenshot(html, tmp_path / "regions.png", tmp_path, window=(WINDOW[0], 2400))  # the table too
    count, _, stats, _ = cv2.connectedComponentsWithStats(_mask(image, "#ff1744").astype(np.uint8))
    frames = [stats[i] for i in range(1, count) if stats[i][2] > 40 and stats[i][3] > 40]
    assert len(frames) == 1, "one region box, on the one thumbnail (the others have none)"
    x, y, w, h, _ = frames[0]
    assert abs(w - 80) <= 3 and abs(h - 60) <= 3  # half the 160 x 120 thumbnail wide, half of it high
