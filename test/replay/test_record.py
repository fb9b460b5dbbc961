"""`lionfs record` tapes a live session into a bag that `lionfs replay` and independent MCAP readers read."""
from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

from replay_helpers import gradient_frames, lionfs_command, load_json, run_lionfs

from lionfs_testing import wait_until

FRAMES = 12
FPS = 10.0
ANSWERED_FRAME = 4


def _publish_session(node, frames: np.ndarray) -> None:
    """A camera (sensor-data QoS, like a driver) and an assistant that answers one frame, partial then final."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from lionfs_ros.image_codec import encode_raw
    from lionfs_ros.msg import AssistantMessage, GuidanceEvent

    camera = node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)  # bringup's camera topic
    assistant = node.create_publisher(AssistantMessage, "assistant", 50)
    guidance = node.create_publisher(GuidanceEvent, "guidance", 50)
    assert wait_until(lambda: camera.get_subscription_count() and assistant.get_subscription_count()
                      and guidance.get_subscription_count(), timeout=20), "lionfs record did not subscribe"
    time.sleep(0.3)
    for i, rgb in enumerate(frames):
        height, width, step, data = encode_raw(rgb)
        image = Image(height=height, width=width, step=step, data=data, encoding="rgb8")
        image.header.stamp.sec, image.header.stamp.nanosec = 50, int(i / FPS * 1e9)
        image.header.frame_id = "camera"
        camera.publish(image)
        if i == ANSWERED_FRAME:
            for sequence, (text, final) in enumerate((("You", False), ("You open the jar.", True))):
                assistant.publish(AssistantMessage(header=image.header, turn_index=0, text=text, is_final=final,
                                                   sequence=sequence, trigger_score=0.8))
            guidance.publish(GuidanceEvent(header=image.header, event_type=GuidanceEvent.FRAMES_DROPPED, count=2))
        time.sleep(1.0 / FPS)
    time.sleep(0.5)


def test_record_then_replay_and_read_with_mcap(tmp_path, ros_domain, processes, rclpy_context):
    import rclpy

    bag = tmp_path / "session"
    recorder = processes.start(lionfs_command() + ["record", "--out", str(bag), "--namespace", "robot1"], "record")
    context, executor = rclpy_context
    node = rclpy.create_node("session", namespace="robot1", context=context)
    executor.add_node(node)
    frames = gradient_frames(FRAMES)
    _publish_session(node, frames)
    recorder.send_signal(signal.SIGINT)
    assert recorder.wait(timeout=20) == 0, processes.log(recorder)
    log = processes.log(recorder)
    assert f"/robot1/camera/image_raw {FRAMES}" in log and "/robot1/assistant 2" in log and "/robot1/guidance 1" in log

    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps([{"time": ANSWERED_FRAME / FPS, "text": "You open the jar."}]))
    result = run_lionfs(["replay", bag, "--mode", "recorded", "--truth", truth, "--report", tmp_path / "r",
                         "--no-progress"])
    assert result.returncode == 0, result.stderr
    report = load_json(tmp_path / "r" / "report.json")
    (response,) = report["responses"]
    assert response["text"] == "You open the jar." and response["frame_index"] == ANSWERED_FRAME
    assert response["messages"] == 2 and response["latency_s"] is not None
    assert report["metrics"]["triggers"]["f1"] == 1.0 and report["metrics"]["text"]["exact_match"] == 1.0
    assert report["metrics"]["frames"]["dropped_engine"] == 2

    # An independent reader (Foxglove's mcap with its ROS 2 decoder) decodes our custom messages from the
    # definitions in the file, as ROS 2 tools do.
    mcap_reader = pytest.importorskip("mcap.reader", reason="mcap (requirements/dev.txt) is not installed")
    decoder = pytest.importorskip("mcap_ros2.decoder", reason="mcap-ros2-support (requirements/dev.txt) is not installed")
    (mcap_file,) = bag.glob("*.mcap")
    with open(mcap_file, "rb") as fh:
        reader = mcap_reader.make_reader(fh, decoder_factories=[decoder.DecoderFactory()])
        decoded = [(channel.topic, schema.name, message) for schema, channel, _, message in reader.iter_decoded_messages()]
    texts = [m.text for topic, name, m in decoded if name == "lionfs_ros/msg/AssistantMessage"]
    assert texts == ["You", "You open the jar."]
    images = [m for topic, name, m in decoded if topic == "/robot1/camera/image_raw"]
    assert len(images) == FRAMES and bytes(images[3].data) == frames[3].tobytes()
    assert "rosbag2_bagfile_information" in (bag / "metadata.yaml").read_text()


def test_record_refuses_an_existing_path(tmp_path):
    (tmp_path / "bag").mkdir()
    result = run_lionfs(["record", "--out", tmp_path / "bag", "--duration", "1"])
    assert result.returncode == 2 and "already exists" in result.stderr


def test_record_with_nothing_to_record_fails_instead_of_writing_an_empty_bag(tmp_path, ros_domain):
    result = run_lionfs(["record", "--out", tmp_path / "bag", "--namespace", "robot9", "--duration", "1.5"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nothing was recorded; looked for" in result.stderr and "/robot9/camera/image_raw" in result.stderr
