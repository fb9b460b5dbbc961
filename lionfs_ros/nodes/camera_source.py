"""A camera driver stand-in: publishes a sequence of RGB frames in real time.

Used by `lionfs demo` to play a synthetic episode. Frames are stamped with the node's clock at
publish time, as a live camera driver would, and the episode time of each frame is kept so
responses can be scored against the episode's truth.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from lionfs_ros.image_codec import encode_compressed, encode_raw


class CameraSource(Node):
    def __init__(self, topic: str, transport: str = "raw", encoding: str = "rgb8", frame_id: str = "camera", **kwargs):
        super().__init__("camera_source", **kwargs)
        self.transport, self.encoding, self.frame_id = transport, encoding, frame_id
        msg_type = CompressedImage if transport == "compressed" else Image
        self.publisher = self.create_publisher(msg_type, topic, qos_profile_sensor_data)
        self.published: list[tuple[float, float]] = []  # (episode time, stamp seconds)

    def wait_for_subscribers(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.publisher.get_subscription_count() > 0:
                return True
            time.sleep(0.05)
        return False

    def play(self, frames: Iterable[tuple[np.ndarray, float]], rate: float = 1.0,
             on_frame: Callable[[float], None] | None = None) -> int:
        """Publish (rgb, episode time) pairs, sleeping to keep episode time / `rate` pacing."""
        start = time.monotonic()
        for rgb, episode_time in frames:
            delay = start + episode_time / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.publish_frame(rgb, episode_time)
            if on_frame is not None:
                on_frame(episode_time)
        return len(self.published)

    def publish_frame(self, rgb: np.ndarray, episode_time: float) -> None:
        stamp = self.get_clock().now().to_msg()
        if self.transport == "compressed":
            msg = CompressedImage(format="jpeg", data=encode_compressed(rgb, "jpeg"))
        else:
            height, width, step, data = encode_raw(rgb, self.encoding)
            msg = Image(height=height, width=width, step=step, data=data, encoding=self.encoding)
        msg.header.stamp = stamp
        msg.header.frame_id = self.frame_id
        self.publisher.publish(msg)
        self.published.append((episode_time, stamp.sec + stamp.nanosec * 1e-9))
