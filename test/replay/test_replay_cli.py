"""`lionfs replay` end to end: deterministic runs on the real engine with a tiny real model, bags from
other tools, damaged bags, ground truth from a topic or a sidecar file, and --compare."""
from __future__ import annotations

import json

import pytest

from replay_helpers import gradient_frames, load_json, run_lionfs, write_plain_bag
from test_bag_reading import truncated_copy

# Everything a run measures about time or memory differs between runs; the rest must not.
RUN_DEPENDENT = ("latency_s", "first_latency_s", "decision_latency_s", "generation_latency_s")


def _deterministic(bag, report, tiny_model, *extra):
    model, params = tiny_model
    result = run_lionfs(["replay", bag, "--model", model, "--params", params, "--report", report, "--no-progress",
                         *extra])
    assert result.returncode == 0, result.stderr[-3000:]
    return load_json(report / "report.json"), result


def _comparable(report: dict) -> dict:
    responses = [{k: v for k, v in r.items() if k not in RUN_DEPENDENT} for r in report["responses"]]
    metrics = {k: v for k, v in report["metrics"].items() if k in ("triggers", "text", "frames")}
    return {"responses": responses, "metrics": metrics, "frames": report["frames"], "truth": report["truth"]}


def test_deterministic_runs_are_identical(tmp_path, synth_bag, tiny_model):
    first, result = _deterministic(synth_bag, tmp_path / "a", tiny_model)
    second, _ = _deterministic(synth_bag, tmp_path / "b", tiny_model)
    assert _comparable(first) == _comparable(second)
    assert first["mode"] == "deterministic" and first["status"] == {"complete": True, "error": None}
    assert first["responses"], "the calibrated tiny model speaks on some frames"
    assert first["truth"]["source"] == "topic /lionfs/ground_truth" and first["truth"]["events"]
    triggers = first["metrics"]["triggers"]
    narrated = [r for r in first["responses"] if not r["query_id"]]  # answers to the bag's questions are QA's
    assert triggers["num_responses"] == len(narrated) < len(first["responses"])
    assert triggers["num_truth"] == len(first["truth"]["events"])
    qa = first["metrics"]["qa"]
    assert qa["unanswered"] == 0 and qa["accuracy"]["all"]["count"] == len(first["responses"]) - len(narrated)
    assert first["metrics"]["latency"]["end_to_end"]["count"] == len(first["responses"])
    assert first["metrics"]["frames"]["fed"] == first["frames"]["decoded"] > 0
    assert first["metrics"]["memory"]["rss_mib"] > 0
    stream = first["metrics"]["stream"]
    assert stream["turns"] == len(first["truth"]["events"]) and stream["lm_ppl"] >= 1.0 and 0 <= stream["fluency"] <= 1
    assert "lionfs replay (deterministic):" in result.stdout and "report:" in result.stdout
    html = (tmp_path / "a" / "report.html").read_text()
    assert 'id="timeline"' in html and html.count('class="response"') == len(first["responses"])
    assert "data:image/jpeg;base64," in html  # keyframe thumbnails embedded


def test_sidecar_truth_gives_the_same_truth_as_the_topic(tmp_path, synth_dir, synth_bag):
    # Recorded mode needs no model: only the truth handling is under test here.
    episode = json.loads((synth_dir / "episodes" / f"{synth_bag.name}.json").read_text())
    from_topic = run_lionfs(["replay", synth_bag, "--mode", "recorded", "--report", tmp_path / "t", "--no-progress"])
    stream = synth_dir / "narration_stream_train.json"
    from_file = run_lionfs(["replay", synth_bag, "--mode", "recorded", "--truth", stream, "--report", tmp_path / "f",
                            "--no-progress"])
    assert from_topic.returncode == 0 and from_file.returncode == 0, from_file.stderr
    topic_events = load_json(tmp_path / "t" / "report.json")["truth"]["events"]
    file_report = load_json(tmp_path / "f" / "report.json")
    assert file_report["truth"]["source"] == f"file {stream} (video {synth_bag.name})"
    assert [(e["time"], e["text"]) for e in file_report["truth"]["events"]] == \
        [(e["time"], e["text"]) for e in topic_events] == [(n["time"], n["text"]) for n in episode["narrations"]]


def test_foreign_bag_with_compressed_images_and_no_truth(tmp_path, tiny_model):
    bag = write_plain_bag(tmp_path / "driver_bag", "sqlite3", gradient_frames(20), 10.0,
                          topic="/camera/color/image_raw/compressed", compressed=True,
                          extra_topics={"/robot/status": ["ok"]})
    report, result = _deterministic(bag, tmp_path / "r", tiny_model)
    assert report["image_topic"] == "/camera/color/image_raw/compressed"
    assert report["bag"]["storage"] == "sqlite3" and report["frames"]["decoded"] == 20
    assert report["truth"] is None and report["metrics"]["triggers"] is None
    assert report["responses"] and report["metrics"]["latency"]["end_to_end"]["count"] == len(report["responses"])
    assert "no ground truth" in result.stdout
    assert "No ground truth" in (tmp_path / "r" / "report.html").read_text()


def test_truncated_bag_gives_a_clear_error_and_a_partial_report(tmp_path):
    bag = write_plain_bag(tmp_path / "bag", "mcap", gradient_frames(40, 128, 128), 10.0)
    damaged = truncated_copy(bag, tmp_path / "damaged", 0.75)
    result = run_lionfs(["replay", damaged, "--mode", "recorded", "--report", tmp_path / "r", "--no-progress"])
    assert result.returncode == 1
    assert "error: bag damaged: truncated: the file ends inside a record at byte" in result.stderr
    assert "partial report written" in result.stderr and "Traceback" not in result.stderr
    report = load_json(tmp_path / "r" / "report.json")
    assert report["status"]["complete"] is False and report["status"]["error"].startswith("bag damaged: truncated")
    assert 0 < report["frames"]["decoded"] < 40
    assert 'id="error"' in (tmp_path / "r" / "report.html").read_text()


def test_unreadable_bag_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.mcap"
    path.write_bytes(b"\x89MCAP0\r\n garbage")
    result = run_lionfs(["replay", path, "--mode", "recorded", "--report", tmp_path / "r", "--no-progress"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "broken.mcap: unreadable bag" in result.stderr
    assert load_json(tmp_path / "r" / "report.json")["status"]["error"].startswith("bag unreadable:")


@pytest.mark.parametrize("args, message", [
    ([], "give a BAG to replay"),
    (["some_bag"], "--report DIR is required"),
    (["some_bag", "--report", "r", "--rate", "0"], "--rate must be > 0"),
    (["some_bag", "--report", "r", "--threshold", "1.5"], "--threshold must be in [0, 1]"),
])
def test_bad_arguments(tmp_path, args, message):
    result = run_lionfs(["replay", *args])
    assert result.returncode == 2 and message in result.stderr


def test_bad_params_file_names_the_key(tmp_path, synth_bag):
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    treshold: 0.5\n")
    result = run_lionfs(["replay", synth_bag, "--params", params, "--report", tmp_path / "r"])
    assert result.returncode == 2
    assert "unknown parameter 'treshold' (did you mean 'threshold'?)" in result.stderr


def _report_with(tmp_path, name: str, response_times: list[float], threshold: float) -> dict:
    """A report from known responses against a known truth (the runner's output, without a model)."""
    from lionfs_ros.replay.bag_frames import FrameStats
    from lionfs_ros.replay.records import ResponseRecord, RunOutput
    from lionfs_ros.replay.pipeline import ReplaySettings, build_report
    from lionfs_ros.replay.truth import TruthEvent, TruthTimeline

    truth = TruthTimeline([TruthEvent(2.0, "You pick up the red cup."), TruthEvent(6.0, "You open the jar.")], "test")
    output = RunOutput(mode="deterministic", model=name, responses=[
        ResponseRecord(i, t, "You pick up the red cup.", True, latency_s=0.1 * (i + 1)) for i, t in enumerate(response_times)])
    stats = FrameStats(decoded=80, origin_s=0.0, last_s=10.0)
    settings = ReplaySettings(bag=tmp_path / "bag", report_dir=tmp_path / name, threshold=threshold)
    report = build_report(settings, {"path": "bag", "storage": "mcap"}, "/camera/image_raw", stats, truth, output,
                          {"complete": True, "error": None})
    report.write(tmp_path / name)
    return report.to_dict()


def test_compare_prints_two_reports_side_by_side(tmp_path):
    quiet = _report_with(tmp_path, "quiet", [2.2], threshold=0.5)
    chatty = _report_with(tmp_path, "chatty", [2.1, 4.0, 6.3, 8.0], threshold=0.9)
    assert (quiet["metrics"]["triggers"]["precision"], chatty["metrics"]["triggers"]["precision"]) == (1.0, 0.5)
    result = run_lionfs(["replay", "--compare", tmp_path / "quiet" / "report.json", tmp_path / "chatty"])
    assert result.returncode == 0, result.stderr
    rows = {line.split("  ")[0]: line.split() for line in result.stdout.splitlines()}
    assert rows["responses"] == ["responses", "1", "4", "+3"]
    assert rows["precision"] == ["precision", "1", "0.5", "-0.5", "worse"]
    assert rows["recall"] == ["recall", "0.5", "1", "+0.5", "better"]
    assert rows["settings: threshold"] == ["settings:", "threshold", "0.5", "0.9", "+0.4"]
    bad = run_lionfs(["replay", "--compare", tmp_path / "quiet" / "report.json", tmp_path / "missing.json"])
    assert bad.returncode == 2 and "missing.json: no such report" in bad.stderr
