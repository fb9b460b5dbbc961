"""Serialized ROS messages -> a rosbag2 (mcap) with `rosbags`, readable by `lionfs replay` and ROS 2 tools.

Takes CDR bytes exactly as they came off the wire (rclpy raw subscriptions), so nothing is
re-encoded; the message definitions written into the bag come from our typestore (Kilted plus
lionfs_ros/msg/*.msg), which is what lets any MCAP reader decode our custom messages.
"""
from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

BAG_VERSION = 9  # the newest rosbag2 metadata version rosbags writes; Jazzy and Kilted read it


class BagSinkError(RuntimeError):
    """The bag cannot be created or a type cannot be recorded."""


class BagSink:
    def __init__(self, path: Path):
        from rosbags.rosbag2 import StoragePlugin, Writer

        from lionfs_ros.replay.ros_types import default_typestore

        if path.exists():
            raise BagSinkError(f"{path} already exists; record into a new path")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.typestore = default_typestore()
        self._writer = Writer(path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: dict[str, object] = {}
        self._lock = threading.Lock()
        self.counts: Counter = Counter()
        self.closed = False

    def can_record(self, msgtype: str) -> bool:
        return msgtype in self.typestore.fielddefs

    def add_topic(self, topic: str, msgtype: str) -> None:
        if not self.can_record(msgtype):
            raise BagSinkError(f"no definition of {msgtype} to record {topic} with")
        with self._lock:
            if topic not in self._connections:
                self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.typestore)

    def write(self, topic: str, log_time_ns: int, data: bytes) -> None:
        with self._lock:
            if self.closed:
                return
            self._writer.write(self._connections[topic], log_time_ns, data)
            self.counts[topic] += 1

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._writer.close()
