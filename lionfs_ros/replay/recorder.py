"""`lionfs record`: tape a live session (camera, assistant messages, events, diagnostics) into a bag.

Like `ros2 bag record` for the topics a replay needs: topics are subscribed as they appear on
the graph, with the type they are published with; the subscription is reliable when every
publisher offers reliable (so large frames are not lost the way best effort loses them over
UDP) and best effort otherwise, so any camera driver matches. Messages are written as received
(CDR bytes) with the receive time as log time.
"""
from __future__ import annotations

import time
import importlib

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from lionfs_ros.replay.bag_sink import BagSink

# Relative to the assistant's namespace, like the node's own topics.
SESSION_TOPICS = ("image_raw", "image_raw/compressed", "assistant", "guidance", "query")
GLOBAL_TOPICS = ("/diagnostics", "/lionfs/ground_truth")
GRAPH_POLL_S = 0.25  # how often new topics are looked for
QUEUE_DEPTH = 100  # a burst of frames while the disk is busy is kept, not dropped


def session_topics(image_topic: str | None, extra: list[str]) -> list[str]:
    topics = list(SESSION_TOPICS) + list(GLOBAL_TOPICS)
    if image_topic:
        topics = [image_topic, image_topic.rstrip("/") + "/compressed"] + topics[2:]
    return topics + [t for t in extra if t not in topics]


def message_class(ros_type: str):
    """"pkg/msg/Name" -> the rclpy message class (what rosidl_runtime_py.get_message does)."""
    package, _, name = ros_type.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _qos_for(publishers) -> QoSProfile:
    reliable = bool(publishers) and all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=QUEUE_DEPTH, durability=DurabilityPolicy.VOLATILE,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


class SessionRecorder(Node):
    def __init__(self, sink: BagSink, topics: list[str], **kwargs):
        super().__init__("lionfs_recorder", **kwargs)
        self.sink = sink
        self.wanted = {self.resolve_topic_name(t) for t in topics}
        self.wanted_camera = [self.resolve_topic_name(t) for t in topics[:2]]  # raw and /compressed
        self.recording: dict[str, str] = {}  # topic -> type
        self.skipped: dict[str, str] = {}
        self.create_timer(GRAPH_POLL_S, self.discover)

    def discover(self) -> None:
        """Subscribe to wanted topics that have appeared since the last look."""
        for topic, types in self.get_topic_names_and_types():
            if topic not in self.wanted or topic in self.recording or topic in self.skipped:
                continue
            ros_type = types[0]  # "pkg/msg/Name"
            if not self.sink.can_record(ros_type):
                self.skipped[topic] = f"no definition of {ros_type}"
                self.get_logger().warning(f"not recording {topic}: {self.skipped[topic]}")
                continue
            try:
                msg_class = message_class(ros_type)
            except (ImportError, AttributeError, ValueError) as err:
                self.skipped[topic] = f"{ros_type} is not importable here ({err})"
                self.get_logger().warning(f"not recording {topic}: {self.skipped[topic]}")
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            self.sink.add_topic(topic, ros_type)
            callback = self._writer_for(topic)
            self.create_subscription(msg_class, topic, callback, _qos_for(publishers), raw=True)
            self.recording[topic] = ros_type
            self.get_logger().info(f"recording {topic} ({ros_type})")

    def _writer_for(self, topic: str):
        def write(data: bytes) -> None:
            self.sink.write(topic, time.time_ns(), data)
        return write
