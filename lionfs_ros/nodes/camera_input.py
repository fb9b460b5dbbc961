"""A camera subscription that hands decoded RGB frames (or a rejection reason) to a callback."""
from __future__ import annotations

from typing import Callable

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from lionfs_ros.config import CameraInputParams
from lionfs_ros.image_codec import ImageDecodeError, decode_compressed, decode_raw
from lionfs_ros.nodes.qos import camera_qos

COMPRESSED_SUFFIX = "/compressed"

FrameCallback = Callable[[np.ndarray, object, float], None]  # (rgb, header, receive_time)
RejectCallback = Callable[[str, str, object], None]          # (reason, detail, header)


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def decode_image_msg(msg) -> np.ndarray:
    """A sensor_msgs Image or CompressedImage (rclpy or rosbags) -> HxWx3 uint8 RGB."""
    if hasattr(msg, "encoding"):
        return decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))
    return decode_compressed(msg.format, msg.data)


class CameraInput:
    """Subscribes to the configured camera topic; decodes in the callback thread."""

    def __init__(self, node: Node, params: CameraInputParams, on_frame: FrameCallback, on_reject: RejectCallback,
                 callback_group=None):
        self._node = node
        self._on_frame = on_frame
        self._on_reject = on_reject
        compressed = params.image_transport == "compressed"
        # Like image_transport: remapping applies to the base topic, then the transport suffix.
        base = node.resolve_topic_name(params.image_topic)
        self.topic = base + (COMPRESSED_SUFFIX if compressed else "")
        self.subscription = node.create_subscription(
            CompressedImage if compressed else Image, self.topic, self._callback,
            camera_qos(params.reliability, params.qos_depth), callback_group=callback_group)

    @property
    def resolved_topic(self) -> str:
        return self.subscription.topic_name

    def _callback(self, msg) -> None:
        receive_time = stamp_seconds(self._node.get_clock().now().to_msg())
        try:
            rgb = decode_image_msg(msg)
        except ImageDecodeError as err:
            self._on_reject(err.reason, str(err), msg.header)
            return
        self._on_frame(rgb, msg.header, receive_time)
