"""Trigger matching, truth loading and text scores: the numbers in the report."""
from __future__ import annotations

import json

import pytest

from lionfs_ros.eval.matching import MatchWindow, match_triggers
from lionfs_ros.eval.stats import summarize
from lionfs_ros.eval.text_scores import rouge_l, score_corpus, score_pair
from lionfs_ros.replay.truth import TruthError, load_truth_file, truth_from_topic


def test_matching_finds_the_most_pairs_where_greedy_does_not():
    # Greedy nearest-first pairs the 1.9 response with the 2.0 truth and leaves 1.0 without one.
    scores = match_triggers([1.9], [1.0, 2.0], MatchWindow(1.0, 1.0))
    assert scores.matched == 1
    scores = match_triggers([1.6, 1.9], [1.0, 2.0], MatchWindow(1.0, 1.0))
    assert [(p.response_index, p.truth_index) for p in scores.pairs] == [(0, 0), (1, 1)]
    assert scores.precision == scores.recall == scores.f1 == 1.0
    assert scores.time_diff_s == pytest.approx(0.35) and scores.mean_offset_s == pytest.approx(0.25)


def test_matching_prefers_the_smaller_error_among_maximal_matchings():
    scores = match_triggers([5.0, 5.4], [5.3], MatchWindow(1.0, 1.0))
    assert [(p.response_index, round(p.delta_s, 6)) for p in scores.pairs] == [(1, 0.1)]
    assert scores.precision == 0.5 and scores.recall == 1.0 and scores.f1 == pytest.approx(2 / 3)


def test_matching_window_is_asymmetric_when_asked():
    window = MatchWindow(early_s=0.0, late_s=2.0)  # speaking before the action is done does not count
    assert match_triggers([0.9], [1.0], window).matched == 0
    assert match_triggers([2.9], [1.0], window).matched == 1


def test_precision_recall_edge_cases():
    nothing_said = match_triggers([], [1.0, 2.0], MatchWindow(1, 1))
    assert (nothing_said.precision, nothing_said.recall, nothing_said.f1) == (None, 0.0, 0.0)
    no_truth = match_triggers([1.0], [], MatchWindow(1, 1))
    assert (no_truth.precision, no_truth.recall, no_truth.f1, no_truth.time_diff_s) == (0.0, None, None, None)


def test_text_scores():
    same = score_pair("You pick up the red cup.", "You pick up the red cup.")
    assert same.exact and same.chrf == pytest.approx(100) and same.rouge_l == 1.0
    close = score_pair("You pick up the cup.", "You pick up the red cup.")
    assert not close.exact and 50 < close.chrf < 100 and rouge_l("You pick up the cup.", "You pick up the red cup.") == \
        pytest.approx(2 * (5 / 5) * (5 / 6) / (5 / 5 + 5 / 6))
    unrelated = score_pair("A clock ticks.", "You pick up the red cup.")
    assert unrelated.chrf < close.chrf and unrelated.rouge_l == 0.0
    corpus = score_corpus(["You pick up the red cup.", "You open it."], ["You pick up the red cup.", "You open the jar."])
    assert corpus.pairs == 2 and corpus.exact_match == 0.5 and 0 < corpus.chrf < 100 and "chrF" in corpus.signature
    assert score_corpus([], []).chrf is None


def test_truth_from_topic_uses_the_frame_clock_or_log_times():
    messages = [(1000.25, json.dumps({"time": 503.0, "text": "You tap the bowl.", "kind": "quick"})),
                (1001.0, "You open the jar."),
                (1002.0, json.dumps({"text": "You lift the cup."}))]
    truth = truth_from_topic(messages, "/gt", origin_s=500.0, origin_log_s=1000.0)
    assert [(e.time, e.text, e.kind) for e in truth.events] == [
        (1.0, "You open the jar.", None), (2.0, "You lift the cup.", None), (3.0, "You tap the bowl.", "quick")]


def test_truth_files(tmp_path):
    stream = tmp_path / "stream.json"
    stream.write_text(json.dumps({"vid_a": {"ann": [{"time": 1.0, "text": "A."}]},
                                  "vid_b": {"ann1": [{"time": 2.0, "text": "B."}], "ann2": []}}))
    assert load_truth_file(stream, bag_name="vid_a").events[0].text == "A."
    picked = load_truth_file(stream, video_uid="vid_b")
    assert picked.events[0].text == "B." and "2 annotation passes" in picked.notes[0]
    with pytest.raises(TruthError, match="2 videos and none is named like the bag .*--truth-video"):
        load_truth_file(stream, bag_name="other")
    episode = tmp_path / "episode.json"
    episode.write_text(json.dumps({"episode_id": "e1", "narrations": [{"time": 3.0, "text": "C.", "kind": "detail"}]}))
    assert load_truth_file(episode).events[0].kind == "detail"
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([{"time": 2.0, "text": "Two."}, {"time": 1.0, "text": "One."}]))
    assert [e.text for e in load_truth_file(plain).events] == ["One.", "Two."]
    plain.write_text(json.dumps([{"time": "soon", "text": "x"}]))
    with pytest.raises(TruthError, match="narration 0 needs a numeric 'time'"):
        load_truth_file(plain)
    with pytest.raises(TruthError, match="truth file not found"):
        load_truth_file(tmp_path / "missing.json")


def test_latency_summary():
    summary = summarize([0.1, 0.2, None, 0.3, 0.4])
    assert summary.count == 4 and summary.p50_s == pytest.approx(0.25) and summary.max_s == 0.4
    assert summary.p99_s == pytest.approx(0.397)
    assert summarize([]).p50_s is None
