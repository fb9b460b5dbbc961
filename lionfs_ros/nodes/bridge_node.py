"""bridge: the assistant's topics and the camera for apps without ROS, over WebSocket and HTTP.

Subscribes to `assistant`, `guidance`, `/diagnostics` and the camera (throttled to `camera_rate`)
and hands everything to the ROS-free `lionfs_ros.bridge` server (Foxglove WebSocket protocol via
foxglove-sdk) and page server. Its own process: it starts, stops and restarts without touching
lionfs_node. Callbacks only convert and hand over; nothing here waits on a client.
"""
from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from lionfs_ros.bridge.messages import (ASSISTANT_TOPIC, DIAGNOSTICS_TOPIC, GUIDANCE_TOPIC, assistant_json,
                                        diagnostics_json, guidance_json, stamp_ns)
from lionfs_ros.bridge.server import BridgeServer, CameraFrame
from lionfs_ros.bridge.web import PageServer
from lionfs_ros.config import BridgeParams, ConfigError
from lionfs_ros.image_codec import ImageDecodeError
from lionfs_ros.msg import AssistantMessage, GuidanceEvent
from lionfs_ros.nodes.camera_input import COMPRESSED_SUFFIX, decode_image_msg
from lionfs_ros.nodes.diagnostics import diagnostic_array
from lionfs_ros.nodes.listener import ASSISTANT_TOPIC as ROS_ASSISTANT_TOPIC
from lionfs_ros.nodes.listener import GUIDANCE_TOPIC as ROS_GUIDANCE_TOPIC
from lionfs_ros.nodes.listener import RELIABLE_DEPTH
from lionfs_ros.nodes.params import declare_params
from lionfs_ros.nodes.qos import camera_qos

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
BAD_INPUT_LOG_PERIOD = 5.0
DIAGNOSTICS_DEPTH = 10


class BridgeNode(Node):
    def __init__(self, **kwargs):
        super().__init__("bridge", **kwargs)
        self.params = p = declare_params(self, BridgeParams)
        self.server = self.page = None
        try:
            self.server = BridgeServer(p.host, p.port, p.client_backlog, p.queue_size, p.jpeg_quality).start()
            self.page = PageServer(p.host, p.http_port, self.server.port) if p.http_port else None
        except (OSError, RuntimeError) as err:
            raise ConfigError(f"node {self.get_name()}: cannot listen on {p.host} (WebSocket port {p.port}, HTTP port "
                              f"{p.http_port}): {err}") from err
        self._min_period = 1.0 / p.camera_rate if p.camera_rate > 0 else None
        self._last_forward = float("-inf")
        self.counts = {"camera_frames_in": 0, "camera_frames_skipped": 0, "camera_rejected": 0}
        self._reported_drops = 0
        self.create_subscription(AssistantMessage, ROS_ASSISTANT_TOPIC, self._on_assistant, RELIABLE_DEPTH)
        self.create_subscription(GuidanceEvent, ROS_GUIDANCE_TOPIC, self._on_guidance, RELIABLE_DEPTH)
        self.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, DIAGNOSTICS_DEPTH)
        compressed = p.image_transport == "compressed"
        camera_topic = self.resolve_topic_name(p.image_topic) + (COMPRESSED_SUFFIX if compressed else "")
        self.camera = self.create_subscription(CompressedImage if compressed else Image, camera_topic,
                                               self._on_camera, camera_qos(p.reliability, p.qos_depth))
        self.diagnostics = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_DEPTH)
        self.create_timer(p.diagnostics_period, self._report)
        page = f", overlay page http://{p.host}:{self.page.port}/" if self.page else ""
        self.get_logger().info(f"Foxglove WebSocket on ws://{p.host}:{self.server.port}{page}; "
                               f"camera {self.camera.topic_name} at most {p.camera_rate:g} Hz")
        if p.host not in LOOPBACK_HOSTS:
            self.get_logger().warning(f"listening on {p.host}: anyone who reaches this address sees the camera and "
                                      "the assistant's answers (no authentication, no encryption)")

    def _on_assistant(self, msg: AssistantMessage) -> None:
        self.server.publish(ASSISTANT_TOPIC, assistant_json(msg), stamp_ns(msg.header.stamp))

    def _on_guidance(self, msg: GuidanceEvent) -> None:
        self.server.publish(GUIDANCE_TOPIC, guidance_json(msg), stamp_ns(msg.header.stamp))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.server.publish(DIAGNOSTICS_TOPIC, diagnostics_json(msg), stamp_ns(msg.header.stamp))

    def _on_camera(self, msg) -> None:
        self.counts["camera_frames_in"] += 1
        now = time.monotonic()
        if self._min_period is None or now - self._last_forward < self._min_period or not self.server.wants_camera():
            self.counts["camera_frames_skipped"] += 1
            return
        try:
            rgb = decode_image_msg(msg)
        except ImageDecodeError as err:
            self.counts["camera_rejected"] += 1
            self.get_logger().warning(f"rejected a camera message: {err}", throttle_duration_sec=BAD_INPUT_LOG_PERIOD)
            return
        self._last_forward = now
        jpeg = bytes(msg.data) if getattr(msg, "format", "").lower() in ("jpeg", "jpg") else b""
        height, width = rgb.shape[:2]
        self.server.publish_frame(CameraFrame(stamp_ns(msg.header.stamp), msg.header.frame_id,
                                              rgb=None if jpeg else rgb, jpeg=jpeg, width=width, height=height))

    def _report(self) -> None:
        p, stats = self.params, self.server.stats() | self.counts
        dropped = stats["dropped_total"] + stats["client_overflow_reports"]
        level, message = "ok", f"{stats['clients']} client(s)"
        if dropped > self._reported_drops:
            level, message = "warn", f"{message}; messages dropped for slow clients"
        self._reported_drops = dropped
        values = {"host": p.host, "ws_port": self.server.port, "http_port": self.page.port if self.page else 0,
                  "camera_topic": self.camera.topic_name} | stats
        self.diagnostics.publish(diagnostic_array(self.get_clock().now().to_msg(), f"{self.get_name()}: websocket",
                                                  p.stream_id, level, message, values))

    def destroy_node(self) -> None:
        for part in (self.page, self.server):  # either may be missing when the constructor failed
            if part is not None:
                part.stop()
        super().destroy_node()
