"""Live mode: the bag is played into a lionfs_node over ROS 2 and what it publishes is measured."""
from __future__ import annotations

import threading
import time

import pytest

from replay_helpers import gradient_frames, load_json, run_lionfs, write_plain_bag

from lionfs_testing import wait_until

# The stand-in assistant answers every ANSWER_EVERY-th frame: first words after FIRST_WORDS_S,
# the final text after FINAL_S, measured from the moment it received the frame.
ANSWER_EVERY = 5
FIRST_WORDS_S, FINAL_S = 0.15, 0.40
# What transport and scheduling may add on a loaded 2-core machine, on top of the known delays.
SLACK_S = 0.35


def test_live_mode_reports_the_real_nodes_latency(tmp_path, ros_domain, synth_bag, tiny_model):
    model, params = tiny_model
    result = run_lionfs(["replay", synth_bag, "--mode", "live", "--model", model, "--params", params, "--rate", "2",
                         "--report", tmp_path / "r", "--no-progress", "--startup-timeout", "90", "--drain", "20"],
                        timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = load_json(tmp_path / "r" / "report.json")
    frames = report["metrics"]["frames"]
    assert report["mode"] == "live" and frames["fed"] == report["frames"]["decoded"] > 0
    assert frames["received"] is not None and frames["received"] <= frames["fed"]
    assert frames["dropped_total"] == frames["fed"] - frames["received"] + frames["dropped_engine"]
    responses = report["responses"]
    assert responses, "the calibrated tiny model speaks on some frames"
    finals = [r for r in responses if r["is_final"]]
    latency = report["metrics"]["latency"]["end_to_end"]
    assert latency["count"] == len(finals) > 0 and 0 < latency["p50_s"] <= latency["p99_s"]
    for r in finals:
        # Our measurement spans publish -> receive; the node's own account (arrival -> decision -> final)
        # lies inside it, so it can never be smaller.
        assert r["latency_s"] >= r["decision_latency_s"] + r["generation_latency_s"] - 0.005, r
        assert r["first_latency_s"] <= r["latency_s"]
    assert report["metrics"]["memory"]["rss_mib"] > 0 and "lionfs_node (pid" in report["metrics"]["memory"]["process"]
    assert report["metrics"]["triggers"]["num_truth"] == len(report["truth"]["events"])
    qa = report["metrics"]["qa"]  # the bag's questions went to the node's query topic and were answered
    assert qa["unanswered"] == 0 and qa["accuracy"]["all"]["count"] > 0, qa
    assert {r["query_id"] for r in responses if r["query_id"]} == {q["query_id"] for q in qa["questions"]}


class StandInAssistant:
    """Answers frames like lionfs_node would (stamped with the frame's header) after known delays."""

    def __init__(self, context, executor, namespace: str):
        import rclpy
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from lionfs_ros.msg import AssistantMessage

        self.node = rclpy.create_node("stand_in_assistant", namespace=namespace, context=context)
        self.publisher = self.node.create_publisher(AssistantMessage, "assistant", 50)
        self.node.create_subscription(Image, "camera/image_raw", self._on_frame, qos_profile_sensor_data)  # bringup's
        executor.add_node(self.node)
        self.frames, self.turns = 0, 0

    def _on_frame(self, image) -> None:
        self.frames += 1
        if (self.frames - 1) % ANSWER_EVERY == 0:
            turn, self.turns = self.turns, self.turns + 1
            threading.Thread(target=self._answer, args=(image.header, turn, time.monotonic()), daemon=True).start()

    def _answer(self, header, turn: int, received: float) -> None:
        from lionfs_ros.msg import AssistantMessage

        for sequence, (delay, text, final) in enumerate(((FIRST_WORDS_S, "You", False),
                                                         (FINAL_S, f"You do thing {turn}.", True))):
            time.sleep(max(0.0, received + delay - time.monotonic()))
            self.publisher.publish(AssistantMessage(header=header, turn_index=turn, text=text, is_final=final,
                                                    sequence=sequence, trigger_score=0.9))


def test_live_latency_measurement_matches_known_delays(tmp_path, ros_domain, rclpy_context):
    bag = write_plain_bag(tmp_path / "bag", "mcap", gradient_frames(20), 10.0)
    context, executor = rclpy_context
    assistant = StandInAssistant(context, executor, "/standin")
    result = run_lionfs(["replay", bag, "--mode", "live", "--attach", "/standin", "--report", tmp_path / "r",
                         "--no-progress", "--startup-timeout", "30", "--drain", "5"], timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert wait_until(lambda: assistant.frames == 20, timeout=5)
    report = load_json(tmp_path / "r" / "report.json")
    responses = report["responses"]
    assert [r["frame_index"] for r in responses] == list(range(0, 20, ANSWER_EVERY))
    assert [r["text"] for r in responses] == [f"You do thing {i}." for i in range(len(responses))]
    for r in responses:
        assert FINAL_S <= r["latency_s"] <= FINAL_S + SLACK_S, r
        assert FIRST_WORDS_S <= r["first_latency_s"] <= FIRST_WORDS_S + SLACK_S, r
        assert r["messages"] == 2 and r["is_final"]
    assert [round(r["trigger_time"], 6) for r in responses] == [round(i / 10.0, 6) for i in range(0, 20, ANSWER_EVERY)]
    assert report["metrics"]["frames"]["fed"] == 20
    assert "no /diagnostics from the node" in " ".join(report["notes"])


def test_live_mode_fails_clearly_when_no_node_answers(tmp_path, ros_domain):
    bag = write_plain_bag(tmp_path / "bag", "mcap", gradient_frames(3), 10.0)
    result = run_lionfs(["replay", bag, "--mode", "live", "--attach", "/nobody", "--report", tmp_path / "r",
                         "--no-progress", "--startup-timeout", "2"], timeout=60)
    assert result.returncode == 2
    assert "lionfs_node in /nobody did not subscribe to the camera and publish its answers within 2 s" in result.stderr


@pytest.mark.parametrize("model", ["/no/such/model"])
def test_live_mode_reports_a_node_that_cannot_start(tmp_path, ros_domain, model):
    bag = write_plain_bag(tmp_path / "bag", "mcap", gradient_frames(3), 10.0)
    result = run_lionfs(["replay", bag, "--mode", "live", "--model", model, "--report", tmp_path / "r",
                         "--no-progress", "--startup-timeout", "60"], timeout=120)
    assert result.returncode == 2
    assert "did not subscribe" in result.stderr or "exited with code" in result.stderr
    assert "model path /no/such/model does not exist" in result.stderr  # the node's own log, shown
