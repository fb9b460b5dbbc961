"""stream_monitor as a real process, fed by bare rclpy publishers (not our code path)."""
import sys

import cv2
import numpy as np
import pytest

from lionfs_testing import VENV_BIN, wait_until

FRAME = np.full((24, 32, 3), 90, dtype=np.uint8)


def start_monitor(processes, *ros_args):
    exe = VENV_BIN / "stream_monitor"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "lionfs_ros.nodes", "stream_monitor"]
    return processes.start(command + ["--ros-args", "-p", "stall_timeout:=1.0", "-p", "diagnostics_period:=0.3",
                                      *ros_args], "stream_monitor")


class Harness:
    def __init__(self, rclpy_context, msg_type, topic, reliability):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from lionfs_ros.msg import GuidanceEvent

        context, executor = rclpy_context
        self.node = rclpy.create_node("bare_camera", context=context)
        executor.add_node(self.node)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy[reliability])
        self.publisher = self.node.create_publisher(msg_type, topic, qos)
        self.events, self.diagnostics = [], []
        self.node.create_subscription(GuidanceEvent, "guidance", self.events.append, 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)

    def event_types(self):
        return [e.event_type for e in self.events]

    def latest_diagnostics(self) -> dict:
        return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values} if self.diagnostics else {}

    def prime(self, msg, timeout=20):
        """Publish until the monitor reports frames on /diagnostics: both directions are matched.

        (A publisher can see our subscription before we see it, so the very first event of a
        stream may be published before it can reach us.)"""
        assert wait_until(lambda: self.publisher.get_subscription_count() > 0, timeout=timeout)
        assert wait_until(lambda: self.publish(msg) or int(self.latest_diagnostics().get("frames_received", 0)) > 0,
                          timeout=timeout), "the monitor never reported the stream"

    def publish(self, msg, count=1, period=0.05):
        import time

        for _ in range(count):
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self.publisher.publish(msg)
            time.sleep(period)


def raw(frame=FRAME, **overrides):
    from sensor_msgs.msg import Image

    height, width = frame.shape[:2]
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=frame.tobytes())
    for key, value in overrides.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize("reliability", ["BEST_EFFORT", "RELIABLE"])
def test_reports_stream_start_stall_and_resume(processes, rclpy_context, reliability):
    from lionfs_ros.msg import GuidanceEvent
    from sensor_msgs.msg import Image

    monitor = start_monitor(processes)
    h = Harness(rclpy_context, Image, "image_raw", reliability)
    h.prime(raw())
    h.publish(raw(), count=20)
    stopped = len(h.events)
    assert wait_until(lambda: GuidanceEvent.STREAM_STALLED in h.event_types()[stopped:], timeout=5), h.event_types()
    restarted = len(h.events)
    h.publish(raw(), count=5)
    assert wait_until(lambda: GuidanceEvent.STREAM_STARTED in h.event_types()[restarted:], timeout=5), h.event_types()
    resumed = next(e for e in h.events[restarted:] if e.event_type == GuidanceEvent.STREAM_STARTED)
    assert "resumed" in resumed.summary
    stats = wait_until(lambda: (d := h.latest_diagnostics()) and int(d["frames_received"]) >= 20 and d, timeout=5)
    rates = [float(kv.value) for d in h.diagnostics for kv in d.status[0].values if kv.key == "rate_hz"]
    assert max(rates) > 5  # published at ~10-20 Hz
    assert monitor.poll() is None, processes.log(monitor)


def test_bad_raw_messages_are_counted_and_not_fatal(processes, rclpy_context):
    from lionfs_ros.msg import GuidanceEvent
    from sensor_msgs.msg import Image

    monitor = start_monitor(processes, "-p", "reliability:=reliable")
    h = Harness(rclpy_context, Image, "image_raw", "RELIABLE")
    h.prime(raw())
    h.publish(raw(), count=3)
    broken = [raw(encoding="yuv9"), raw(step=5), raw(data=FRAME.tobytes()[:100]),
              raw(height=0, width=0, step=0, data=b"")]
    for msg in broken:
        h.publish(msg)
    h.publish(raw(), count=3)

    def rejected():
        return int(h.latest_diagnostics().get("frames_rejected", 0)) == 4 and h.latest_diagnostics()
    stats = wait_until(rejected, timeout=20)
    assert stats, h.latest_diagnostics()
    assert stats["rejected_unknown_encoding"] == "1" and stats["rejected_bad_step"] == "1"
    assert stats["rejected_truncated"] == "1" and stats["rejected_empty_frame"] == "1"
    assert int(stats["frames_received"]) >= 6

    def bad_inputs():  # the events travel on their own topic: the diagnostics can arrive before the last of them
        return sum(e.count for e in h.events if e.event_type == GuidanceEvent.BAD_INPUT)
    assert wait_until(lambda: bad_inputs() >= 4, timeout=20), bad_inputs()
    assert bad_inputs() == 4
    assert monitor.poll() is None
    assert wait_until(lambda: "rejected a message on /image_raw" in processes.log(monitor), timeout=20)


def test_compressed_transport_and_corrupt_jpeg(processes, rclpy_context):
    from sensor_msgs.msg import CompressedImage

    monitor = start_monitor(processes, "-p", "image_transport:=compressed", "-r", "image_raw:=camera/image")
    h = Harness(rclpy_context, CompressedImage, "camera/image/compressed", "RELIABLE")
    good = cv2.imencode(".jpg", FRAME)[1].tobytes()
    h.prime(CompressedImage(format="jpeg", data=good))
    h.publish(CompressedImage(format="jpeg", data=good), count=3)
    h.publish(CompressedImage(format="jpeg", data=good[:40] + b"garbage" * 5))
    h.publish(CompressedImage(format="png", data=cv2.imencode(".png", FRAME)[1].tobytes()), count=3)
    stats = wait_until(lambda: (d := h.latest_diagnostics()) and d.get("rejected_corrupt_data") == "1"
                       and int(d["frames_received"]) >= 6 and d, timeout=5)
    assert stats, h.latest_diagnostics()
    assert stats["topic"] == "/camera/image/compressed"
    assert monitor.poll() is None


def test_bad_parameter_value_fails_with_a_clear_error(processes, ros_domain):
    monitor = start_monitor(processes, "-p", "reliability:=sometimes")
    assert monitor.wait(timeout=30) == 2
    assert "reliability must be one of ['best_effort', 'reliable'], got 'sometimes'" in processes.log(monitor)
