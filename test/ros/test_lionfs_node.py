"""lionfs_node as a real process, fed by bare rclpy publishers and read by bare subscribers."""
import time

import cv2
import numpy as np
import pytest

from lionfs_testing import TINY_NODE_PARAMS, build_tiny_model, node_command, wait_until

SIZE = 40
# With threshold 1.0 every decided frame wants to speak (P(interval) < 1): deterministic triggers.
ALWAYS = ["-p", "threshold:=1.0"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("node_model")))


def start_node(processes, model, *extra, name="lionfs_node"):
    return processes.start(node_command("lionfs_node", "-p", f"model_path:={model}", *TINY_NODE_PARAMS, *extra),
                           name)


class Graph:
    """The test's side of the graph: a camera publisher and subscribers to everything the node says."""

    def __init__(self, rclpy_context, reliability="BEST_EFFORT", msg_type=None, topic="image_raw"):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from lionfs_ros.msg import AssistantMessage, GuidanceEvent

        context, executor = rclpy_context
        self.node = rclpy.create_node("bare_peer", context=context)
        executor.add_node(self.node)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy[reliability])
        self.camera = self.node.create_publisher(msg_type or Image, topic, qos)
        self.messages, self.events, self.diagnostics = [], [], []
        self.node.create_subscription(AssistantMessage, "assistant", self.messages.append, 100)
        self.node.create_subscription(GuidanceEvent, "guidance", self.events.append, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 20)
        self.stamps = []
        self.rng = np.random.default_rng(0)

    def wait_for_node(self, timeout=60):
        assert wait_until(lambda: self.camera.get_subscription_count() > 0, timeout=timeout), "node never subscribed"
        # Both directions: the node's publishers must have matched our subscriptions too.
        assert wait_until(lambda: self.diagnostics, timeout=timeout), "no /diagnostics from the node"

    def frame(self, encoding="rgb8"):
        from sensor_msgs.msg import Image

        rgb = self.rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        if encoding == "mono16":
            data = (rgb[..., 0].astype(np.uint16) * 257).tobytes()
            return Image(height=SIZE, width=SIZE, encoding=encoding, step=SIZE * 2, data=data)
        converted = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., 0],
                     "rgba8": np.dstack([rgb, np.full((SIZE, SIZE), 255, np.uint8)]),
                     "bgra8": np.dstack([rgb[..., ::-1], np.full((SIZE, SIZE), 255, np.uint8)])}[encoding]
        converted = np.ascontiguousarray(converted)
        return Image(height=SIZE, width=SIZE, encoding=encoding, step=converted.strides[0], data=converted.tobytes())

    def publish(self, msg, period=0.125):
        """Publish with a fresh, unique stamp; frames at 8 Hz like the synthetic camera."""
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.stamps.append((msg.header.stamp.sec, msg.header.stamp.nanosec))
        self.camera.publish(msg)
        time.sleep(period)

    def stream(self, count, **kwargs):
        for _ in range(count):
            self.publish(self.frame(**kwargs))

    def finals(self):
        return [m for m in self.messages if m.is_final]

    def events_of(self, event_type):
        return [e for e in self.events if e.event_type == event_type]

    def stat_history(self, key):
        return [kv.value for d in self.diagnostics for kv in d.status[0].values if kv.key == key]

    def stat(self, key):
        return self.diagnostics[-1].status[0].values and {
            kv.key: kv.value for kv in self.diagnostics[-1].status[0].values}.get(key) if self.diagnostics else None


def stamp(header):
    return (header.stamp.sec, header.stamp.nanosec)


@pytest.mark.parametrize("reliability", ["BEST_EFFORT", "RELIABLE"])
def test_answers_carry_the_triggering_frame_stamp(processes, rclpy_context, tiny_model, reliability):
    from lionfs_ros.msg import GuidanceEvent

    node = start_node(processes, tiny_model, *ALWAYS)
    graph = Graph(rclpy_context, reliability)
    graph.wait_for_node()
    graph.stream(24)
    assert wait_until(lambda: len(graph.finals()) >= 2, timeout=20), processes.log(node)
    triggers = {e.turn_index: stamp(e.header) for e in graph.events_of(GuidanceEvent.RESPONSE_TRIGGERED)}
    # The first event can be published before the node's publisher has matched us: compare the
    # turns whose trigger event arrived, and require most of them.
    assert len(set(triggers) & {m.turn_index for m in graph.finals()}) >= len(graph.finals()) - 1
    for message in graph.finals():
        assert stamp(message.header) in graph.stamps
        assert triggers.get(message.turn_index, stamp(message.header)) == stamp(message.header)
        assert message.text and message.num_tokens >= 1
        assert message.role == message.ROLE_NARRATION and message.stream_id == "camera"
    partials = [m for m in graph.messages if not m.is_final]
    assert partials and all(stamp(p.header) in graph.stamps for p in partials)
    assert node.poll() is None


def test_every_raw_encoding_is_decided(processes, rclpy_context, tiny_model):
    node = start_node(processes, tiny_model, "-p", "reliability:=reliable")
    graph = Graph(rclpy_context, "RELIABLE")
    graph.wait_for_node()
    encodings = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"]
    for encoding in encodings:
        graph.stream(3, encoding=encoding)
    assert wait_until(lambda: graph.stat("frames_in") == str(3 * len(encodings)), timeout=10), graph.stat("frames_in")
    assert graph.stat("frames_rejected") == "0" and graph.stat("rejected") == "0"
    assert int(graph.stat("decided")) >= 4
    assert node.poll() is None


def test_compressed_jpeg_and_png(processes, rclpy_context, tiny_model):
    from sensor_msgs.msg import CompressedImage

    node = start_node(processes, tiny_model, "-p", "image_transport:=compressed")
    graph = Graph(rclpy_context, "RELIABLE", CompressedImage, "image_raw/compressed")
    graph.wait_for_node()
    for fmt, ext in (("jpeg", ".jpg"), ("png", ".png")):
        for _ in range(4):
            rgb = graph.rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            graph.publish(CompressedImage(format=fmt, data=cv2.imencode(ext, rgb)[1].tobytes()))
    assert wait_until(lambda: graph.stat("frames_in") == "8", timeout=30), graph.stat("frames_in")
    assert graph.stat("frames_rejected") == "0"
    assert float(max(graph.stat_history("decision_rate_hz"))) > 0
    good = cv2.imencode(".jpg", graph.rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))[1].tobytes()
    graph.publish(CompressedImage(format="jpeg", data=good[:60] + b"not a jpeg" * 8))
    graph.publish(CompressedImage(format="jpeg", data=good))
    assert wait_until(lambda: graph.stat("rejected_corrupt_data") == "1" and graph.stat("frames_in") == "9", timeout=30)
    # A 136-byte PNG claiming 12000x12000 (432 MB decoded) is refused from its header, like a raw frame that size;
    # compressedDepth is depth data, not a picture.
    huge = bytearray(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    huge[16:24] = (12000).to_bytes(4, "big") * 2
    graph.publish(CompressedImage(format="png", data=bytes(huge)))
    graph.publish(CompressedImage(format="16UC1; compressedDepth png", data=bytes(12) + bytes(huge)))
    graph.publish(CompressedImage(format="jpeg", data=good))
    assert wait_until(lambda: graph.stat("rejected_too_large") == "1" and graph.stat("rejected_depth_image") == "1"
                      and graph.stat("frames_in") == "10", timeout=30), graph.diagnostics[-1]
    assert node.poll() is None


def test_broken_messages_are_counted_and_the_node_keeps_answering(processes, rclpy_context, tiny_model):
    from lionfs_ros.msg import GuidanceEvent

    node = start_node(processes, tiny_model, *ALWAYS, "-p", "reliability:=reliable")
    graph = Graph(rclpy_context, "RELIABLE")
    graph.wait_for_node()
    graph.stream(4)
    good = graph.frame()
    broken_messages = []
    for field, value in (("encoding", "yuv9"), ("step", 7), ("data", bytes(good.data)[:50])):
        broken = graph.frame()
        setattr(broken, field, value)
        broken_messages.append(broken)
    broken_messages.append(type(good)(height=0, width=0, encoding="rgb8", step=0, data=b""))
    # One at a time, each once counted: a burst behind the good frames could overflow the subscription's history
    # (KEEP_LAST, qos_depth) while the node decides, and a message lost there is never seen, so never counted.
    for count, broken in enumerate(broken_messages, start=1):
        graph.publish(broken)
        assert wait_until(lambda: graph.stat("frames_rejected") == str(count), timeout=20), graph.stat("frames_rejected")
    answered_before = len(graph.finals())
    graph.stream(16)
    assert wait_until(lambda: len(graph.finals()) > answered_before, timeout=20), "no answer after bad input"
    assert graph.stat("rejected_bad_step") == "1" and graph.stat("rejected_unknown_encoding") == "1"
    assert graph.stat("rejected_truncated") == "1" and graph.stat("rejected_empty_frame") == "1"
    def bad_inputs():  # events travel on their own topic: wait for them, then check none is counted twice
        return sum(e.count for e in graph.events_of(GuidanceEvent.BAD_INPUT))
    assert wait_until(lambda: bad_inputs() >= 4, timeout=20), bad_inputs()
    assert bad_inputs() == 4
    assert node.poll() is None
    assert wait_until(lambda: "rejected a message on /image_raw" in processes.log(node), timeout=20)


def test_missing_model_fails_configure_with_a_clear_error(processes, ros_domain, tmp_path):
    node = start_node(processes, str(tmp_path / "no_such_model"))
    assert node.wait(timeout=60) == 1
    assert f"model path {tmp_path / 'no_such_model'} does not exist" in processes.log(node)
