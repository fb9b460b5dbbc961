"""The node set as a robot runs it: `lionfs bringup --namespace`, a bare camera publisher with real
encodings and a misbehaving clock, questions that cannot be answered at once."""
import time

import cv2
import numpy as np
import pytest

from lionfs_testing import build_tiny_model, wait_until
from test_bringup import lionfs

NS = "/robot1"
BIG, SMALL = (480, 640), (40, 40)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("edge_model")))


class Robot:
    """The test's side of the graph, in the robot's namespace."""

    def __init__(self, rclpy_context):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from lionfs_ros.msg import AssistantMessage, GuidanceEvent, UserQuery

        context, executor = rclpy_context
        self.node = rclpy.create_node("robot_peer", namespace=NS, context=context)
        executor.add_node(self.node)
        self.camera = self.node.create_publisher(Image, "camera/image_raw",
                                                 QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE))
        self.query = self.node.create_publisher(UserQuery, "query", 10)
        self.messages, self.events, self.diagnostics = [], [], []
        self.node.create_subscription(AssistantMessage, "assistant", self.messages.append, 100)
        self.node.create_subscription(GuidanceEvent, "guidance", self.events.append, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 20)
        self.rng = np.random.default_rng(0)

    def image(self, encoding, size, stamp_ns):
        from sensor_msgs.msg import Image

        height, width = size
        rgb = self.rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        if encoding == "yuv422_yuy2":
            data = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)[..., :2].copy()  # any bytes of the right layout
        elif encoding == "16UC1":
            data = rgb[..., 0].astype(np.uint16)
        else:
            data = rgb
        data = np.ascontiguousarray(data)
        msg = Image(height=height, width=width, encoding=encoding, step=data.nbytes // height, data=data.tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        return msg

    def now_ns(self):
        return self.node.get_clock().now().nanoseconds

    def publish(self, count, rate, encodings, sizes, offset_ns=0, zero=False):
        for i in range(count):
            stamp = 0 if zero else self.now_ns() + offset_ns
            self.camera.publish(self.image(encodings[i % len(encodings)], sizes[i % len(sizes)], stamp))
            time.sleep(1.0 / rate)

    def stat(self, key):
        if not self.diagnostics:
            return None
        return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values}.get(key)

    def events_of(self, event_type):
        return [e for e in self.events if e.event_type == event_type]


def test_bringup_in_a_namespace_orders_resets_and_never_hangs(processes, rclpy_context, tiny_model, tmp_path):
    from diagnostic_msgs.msg import DiagnosticStatus
    from lionfs_ros.msg import GuidanceEvent, UserQuery

    params = tmp_path / "robot.yaml"
    params.write_text(
        "/**/lionfs_node:\n  ros__parameters:\n"
        f"    model_path: {tiny_model}\n    kv_budget_tokens: 800\n    max_new_tokens: 4\n"
        "    reliability: reliable\n    qos_depth: 200\n    stall_timeout: 1.0\n    question_timeout: 2.0\n")
    bringup = processes.start(lionfs("bringup", "--namespace", NS, "--params", str(params),
                                     "--log-dir", str(tmp_path / "logs")), "bringup")
    robot = Robot(rclpy_context)
    assert wait_until(lambda: robot.camera.get_subscription_count(), timeout=60), processes.log(bringup)
    assert wait_until(lambda: robot.diagnostics, timeout=30)
    out = processes.log(bringup)
    assert f"[lionfs_node] " in out and f"configured: model {tiny_model}" in out  # the file applied under NS

    # 1. In-order frames whose decoding takes very different times (VGA YUYV, tiny RGB) are never refused.
    robot.publish(160, 100, ["yuv422_yuy2", "rgb8"], [BIG, SMALL])
    assert wait_until(lambda: robot.stat("frames_received") == "160", timeout=30), robot.stat("frames_received")
    assert robot.stat("rejected") == "0" and robot.stat("frames_rejected") == "0"
    assert robot.stat("stream_resets") == "0" and not robot.events_of(GuidanceEvent.STREAM_RESET)

    # 2. Depth is refused with its own reason; the camera's clock jumps back 100 s, then stamps go zero.
    robot.camera.publish(robot.image("16UC1", SMALL, robot.now_ns()))
    decided = int(robot.stat("decided"))
    robot.publish(16, 8, ["rgb8"], [SMALL], offset_ns=-100 * 10**9)
    resets = lambda: robot.events_of(GuidanceEvent.STREAM_RESET)  # noqa: E731
    assert wait_until(resets, timeout=10), processes.log(bringup)
    assert resets()[0].score == pytest.approx(100, abs=5)
    warned = lambda: [d for d in robot.diagnostics if d.status[0].level == DiagnosticStatus.WARN  # noqa: E731
                      and "jumped back" in d.status[0].message]
    assert wait_until(warned, timeout=5)
    robot.publish(16, 8, ["rgb8"], [SMALL], zero=True)
    assert wait_until(lambda: robot.stat("zero_stamps") == "16", timeout=10)
    assert int(robot.stat("decided")) >= decided + 4  # decisions resumed on the new clock
    assert robot.stat("rejected") == "0" and robot.stat("rejected_depth_image") == "1"

    # 3. A question stamped far ahead of the camera is answered at the next frames, not when the camera catches up.
    ahead = UserQuery(text="what is in my hand?", query_id="ahead")
    ahead.header.stamp.sec = robot.now_ns() // 10**9 + 1000
    robot.query.publish(ahead)
    answered = lambda: [m for m in robot.messages if m.is_final and m.query_id == "ahead"]  # noqa: E731
    assert wait_until(lambda: robot.publish(1, 8, ["rgb8"], [SMALL]) or answered(), timeout=20), processes.log(bringup)
    assert answered()[0].error == "" and answered()[0].text

    # 4. A question asked while the camera is stalled is withdrawn after question_timeout, with an event.
    assert wait_until(lambda: robot.events_of(GuidanceEvent.STREAM_STALLED), timeout=10)
    robot.query.publish(UserQuery(text="are you there?", query_id="stalled"))
    expired = lambda: [m for m in robot.messages if m.is_final and m.query_id == "stalled"]  # noqa: E731
    assert wait_until(expired, timeout=10) and "no camera frame within 2 s" in expired()[0].error
    # the event travels on its own topic: it can arrive after the final message
    assert wait_until(lambda: [e for e in robot.events_of(GuidanceEvent.QUERY_EXPIRED) if "stalled" in e.summary],
                      timeout=10)
    assert bringup.poll() is None


def test_bringup_refuses_a_params_section_that_would_miss_the_namespace(processes, ros_domain, tmp_path):
    bare = tmp_path / "bare.yaml"
    bare.write_text("lionfs_node:\n  ros__parameters:\n    model_path: /my/model\n")
    bringup = processes.start(lionfs("bringup", "--namespace", NS, "--params", str(bare)), "bringup")
    assert bringup.wait(timeout=30) == 2
    out = processes.log(bringup)
    assert "does not apply to /robot1/lionfs_node" in out and "'/**/lionfs_node'" in out and "started" not in out
