"""One lionfs_node, three cameras (real processes): each stream answers on its own topics, as it would alone;
a flood on one camera drops only that stream's frames."""
import time

import numpy as np
import pytest

from lionfs_testing import TINY_NODE_PARAMS, build_tiny_model, node_command, wait_until

SIZE = 40
STREAMS = {"head": "head/image_raw", "left": "cams/left", "right": "right/image_raw"}
SPEC = "head, left=cams/left, right"  # 'head' and 'right' take the default '<id>/image_raw'
FIRST_FRAMES = 4
FLOOD = 200
# Per-stream queue: deeper than the 4 frames 'left'/'right' send during the flood (so a busy CPU
# cannot overflow theirs), far shallower than the flood (so 'head' must drop).
QUEUE = 16
# Every frame decided (and, at threshold 1, wanting to speak): a flood overruns its stream's queue on any machine.
EVERY_FRAME = "general_fps:=1000.0"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("multi_node_model")))


class Streams:
    """The test's side: a reliable camera per stream and subscribers to each stream's topics."""

    def __init__(self, rclpy_context):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from lionfs_ros.msg import AssistantMessage, GuidanceEvent

        context, executor = rclpy_context
        self.node = rclpy.create_node("multi_peer", context=context)
        executor.add_node(self.node)
        qos = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)  # the flood, every frame delivered
        self.cameras = {sid: self.node.create_publisher(Image, topic, qos) for sid, topic in STREAMS.items()}
        self.messages = {sid: [] for sid in STREAMS}
        self.events = {sid: [] for sid in STREAMS}
        for sid in STREAMS:
            self.node.create_subscription(AssistantMessage, f"{sid}/assistant", self.messages[sid].append, 200)
            self.node.create_subscription(GuidanceEvent, f"{sid}/guidance", self.events[sid].append, 200)
        self.diagnostics = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)
        self.sent = {sid: [] for sid in STREAMS}  # (t, rgb)
        self.rngs = {sid: np.random.default_rng(i) for i, sid in enumerate(STREAMS)}

    def publish(self, sid):
        from sensor_msgs.msg import Image

        rgb = self.rngs[sid].integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        msg = Image(height=SIZE, width=SIZE, encoding="rgb8", step=SIZE * 3, data=rgb.tobytes())
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.sent[sid].append((msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, rgb))
        self.cameras[sid].publish(msg)

    def finals(self, sid):
        return [m for m in self.messages[sid] if m.is_final]

    def stat(self, sid, key):
        for array in reversed(self.diagnostics):
            status = array.status[0]
            if status.hardware_id == sid:
                return {kv.key: kv.value for kv in status.values}.get(key)
        return None


def alone(model_path, frames):
    """The first answer and trigger score of one stream run by itself (the engine a one-stream node runs)."""
    from lionfs_ros.config import LionFSNodeParams, engine_config
    from lionfs_ros.engine import StreamEngine
    from lionfs_ros.model_loading import load_for_inference

    model, _, _ = load_for_inference(model_path, "cpu", "float32")
    params = LionFSNodeParams(model_path=model_path, threshold=1.0, kv_budget_tokens=800, max_new_tokens=4,
                              general_fps=1000.0)
    engine = StreamEngine(model, engine_config(params))
    finals = []
    engine.on_response = lambda u: finals.append(u.text) if u.is_final else None
    t, rgb = frames[0]
    decision = engine.process_frame(rgb, t)
    return finals[0], decision.score


def test_three_cameras_one_node(processes, rclpy_context, tiny_model):
    from lionfs_ros.msg import GuidanceEvent

    node = processes.start(node_command("lionfs_node", "-p", f"model_path:={tiny_model}", *TINY_NODE_PARAMS,
                                        "-p", "threshold:=1.0", "-p", EVERY_FRAME, "-p", f"streams:={SPEC}",
                                        "-p", "reliability:=reliable", "-p", "qos_depth:=500", "-p", "diagnostics_period:=0.2",
                                        "-p", f"frame_queue_size:={QUEUE}"),
                           "lionfs_node")
    peer = Streams(rclpy_context)
    assert wait_until(lambda: all(c.get_subscription_count() > 0 for c in peer.cameras.values()), timeout=60), \
        processes.log(node)
    assert wait_until(lambda: {a.status[0].hardware_id for a in peer.diagnostics} >= set(STREAMS), timeout=30)
    for _ in range(FIRST_FRAMES):  # the three cameras at 8 Hz, frames due at the same time
        for sid in STREAMS:
            peer.publish(sid)
        time.sleep(0.125)
    assert wait_until(lambda: all(peer.finals(sid) for sid in STREAMS), timeout=30), processes.log(node)
    for sid in STREAMS:
        first = min(peer.finals(sid), key=lambda m: m.turn_index)
        assert first.stream_id == sid and first.turn_index == 0
        text, score = alone(tiny_model, peer.sent[sid])
        assert first.text == text, sid
        triggered = [e for e in peer.events[sid] if e.event_type == GuidanceEvent.RESPONSE_TRIGGERED]
        assert triggered and triggered[0].stream_id == sid and triggered[0].score == pytest.approx(score, abs=1e-5)
        stamps = {round(t, 6) for t, _ in peer.sent[sid]}
        assert all(round(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, 6) in stamps for m in peer.messages[sid])

    for _ in range(FLOOD):  # 'head' floods its camera; the others keep their 8 Hz
        peer.publish("head")
    for _ in range(4):
        for sid in ("left", "right"):
            peer.publish(sid)
        time.sleep(0.25)
    sent = {sid: len(peer.sent[sid]) for sid in STREAMS}
    assert wait_until(lambda: all(peer.stat(sid, "frames_in") == str(sent[sid]) for sid in STREAMS), timeout=30), \
        {sid: peer.stat(sid, "frames_in") for sid in STREAMS}
    assert wait_until(lambda: int(peer.stat("head", "dropped")) > 0, timeout=10)
    assert peer.stat("left", "dropped") == "0" and peer.stat("right", "dropped") == "0"
    assert any(e.event_type == GuidanceEvent.FRAMES_DROPPED for e in peer.events["head"])
    assert not any(e.event_type == GuidanceEvent.FRAMES_DROPPED for sid in ("left", "right") for e in peer.events[sid])
    assert node.poll() is None


def test_bad_streams_parameter_stops_the_node_with_one_line(processes, ros_domain):
    node = processes.start(node_command("lionfs_node", "-p", "streams:=head, head=/other"), "lionfs_node")
    node.wait(timeout=60)
    log = processes.log(node)
    assert node.returncode != 0 and "stream id 'head' is given twice" in log
