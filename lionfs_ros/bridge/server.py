"""The bridge's WebSocket side: channels on a foxglove-sdk server, fed from a bounded queue by one thread.

ROS callbacks only hand items over (`publish_*`, never blocking); a worker thread encodes and logs
them to the Foxglove server. Two places can drop, and both count:
- the hand-over: messages wait in a bounded queue (oldest dropped when full) and camera frames in
  a one-frame slot (a newer frame replaces one not yet sent);
- each client's outbox in the server (`client_backlog` messages; the SDK drops the oldest when a
  slow or stalled client lets it fill, and reports that at most once per 30 s in its log, which
  the bridge counts as `client_overflow_reports`).
A client can therefore never make the bridge, let alone lionfs_node, wait.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import dataclass

import foxglove
from foxglove import Channel, Schema
from foxglove.channels import CompressedImageChannel, ImageAnnotationsChannel, LogChannel
from foxglove.messages import CompressedImage, Log, LogLevel, Timestamp

from lionfs_ros.bridge.annotations import Overlay
from lionfs_ros.bridge.messages import (ANNOTATIONS_TOPIC, ASSISTANT_SCHEMA, ASSISTANT_TOPIC, CAMERA_TOPIC,
                                        DIAGNOSTICS_SCHEMA, DIAGNOSTICS_TOPIC, GUIDANCE_SCHEMA, GUIDANCE_TOPIC,
                                        LOG_TOPIC, NS_PER_S)
from lionfs_ros.image_codec import encode_compressed

SERVER_NAME = "lionfs_ros bridge"
# The SDK's (Rust) log record when a client's outbox is full and its oldest messages are dropped.
OVERFLOW_LOGGER = "foxglove.websocket.connected_client.send_lossy"
JSON_SCHEMA_ENCODING = "jsonschema"
# Guidance events that read as warnings in the log; the others are informational.
WARNING_EVENTS = ("STREAM_STALLED", "FRAMES_DROPPED", "DEGRADED_MODE", "BAD_INPUT")
NEW_RESPONSE_EVENT = "RESPONSE_TRIGGERED"


@dataclass
class CameraFrame:
    stamp_ns: int
    frame_id: str
    rgb: object = None    # HxWx3 uint8, encoded to JPEG by the worker
    jpeg: bytes = b""     # or already compressed (passed through)
    width: int = 0
    height: int = 0


class _OverflowCounter(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


class _Subscriptions:
    """foxglove ServerListener: which client is subscribed to which topic."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_client: dict[int, set[str]] = {}

    def on_subscribe(self, client, channel) -> None:
        with self._lock:
            self._by_client.setdefault(client.id, set()).add(channel.topic)

    def on_unsubscribe(self, client, channel) -> None:
        with self._lock:
            topics = self._by_client.get(client.id, set())
            topics.discard(channel.topic)
            if not topics:
                self._by_client.pop(client.id, None)

    def clients(self) -> int:
        with self._lock:
            return len(self._by_client)

    def subscribers(self, topic: str) -> int:
        with self._lock:
            return sum(topic in topics for topics in self._by_client.values())


class BridgeServer:
    def __init__(self, host: str, port: int, client_backlog: int, queue_size: int, jpeg_quality: int):
        self.jpeg_quality = jpeg_quality
        self._cond = threading.Condition()
        self._items: deque = deque()
        self._queue_size = queue_size
        self._frame: CameraFrame | None = None
        self._stopping = False
        self.counts = {"queue_dropped": 0, "camera_frames_replaced": 0, "camera_frames_sent": 0,
                       "messages_sent": 0, "encode_errors": 0}
        self.overlay = Overlay()
        self.subscriptions = _Subscriptions()
        self._overflow = _OverflowCounter()
        overflow_logger = logging.getLogger(OVERFLOW_LOGGER)
        overflow_logger.setLevel(logging.INFO)  # whatever the root logger's level: these records are counted
        overflow_logger.addHandler(self._overflow)
        foxglove.set_log_level("INFO")  # routes the SDK's own log records to Python logging
        self.context = foxglove.Context()
        self._json = {topic: Channel(topic, message_encoding="json", context=self.context,
                                     schema=Schema(name=schema["title"], encoding=JSON_SCHEMA_ENCODING,
                                                   data=json.dumps(schema).encode()))
                      for topic, schema in ((ASSISTANT_TOPIC, ASSISTANT_SCHEMA), (GUIDANCE_TOPIC, GUIDANCE_SCHEMA),
                                            (DIAGNOSTICS_TOPIC, DIAGNOSTICS_SCHEMA))}
        self._camera = CompressedImageChannel(CAMERA_TOPIC, context=self.context)
        self._annotations = ImageAnnotationsChannel(ANNOTATIONS_TOPIC, context=self.context)
        self._log = LogChannel(LOG_TOPIC, context=self.context)
        self.server = foxglove.start_server(name=SERVER_NAME, host=host, port=port, context=self.context,
                                            server_listener=self.subscriptions, message_backlog_size=client_backlog)
        self._worker = threading.Thread(target=self._run, name="bridge-sender", daemon=True)

    def start(self) -> "BridgeServer":
        """Start sending what was handed over (until then it waits in the bounded queue)."""
        self._worker.start()
        return self

    @property
    def port(self) -> int:
        return self.server.port

    # Hand-over from ROS callbacks: never blocks, never raises on load.
    def publish(self, topic: str, message: dict, stamp_ns: int) -> None:
        with self._cond:
            if len(self._items) >= self._queue_size:
                self._items.popleft()
                self.counts["queue_dropped"] += 1
            self._items.append((topic, message, stamp_ns))
            self._cond.notify()

    def publish_frame(self, frame: CameraFrame) -> None:
        with self._cond:
            if self._frame is not None:
                self.counts["camera_frames_replaced"] += 1
            self._frame = frame
            self._cond.notify()

    def wants_camera(self) -> bool:
        """Whether any client would receive a camera frame now (else the node skips decoding it)."""
        return self.subscriptions.subscribers(CAMERA_TOPIC) > 0

    def stats(self) -> dict:
        with self._cond:
            counts, queued = dict(self.counts), len(self._items)
        return counts | {"clients": self.subscriptions.clients(), "queue_depth": queued,
                         "camera_subscribers": self.subscriptions.subscribers(CAMERA_TOPIC),
                         "client_overflow_reports": self._overflow.count,
                         "dropped_total": counts["queue_dropped"] + counts["camera_frames_replaced"]}

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._worker.is_alive():
            self._worker.join(timeout=5)
        self.server.stop()
        logging.getLogger(OVERFLOW_LOGGER).removeHandler(self._overflow)

    # The worker: messages first, then the newest camera frame.
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and self._frame is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                item, frame = (self._items.popleft(), None) if self._items else (None, self._frame)
                if item is None:
                    self._frame = None
            try:
                if item is not None:
                    self._send_message(*item)
                else:
                    self._send_frame(frame)
            except Exception:  # one bad item never stops the bridge; counted and reported
                with self._cond:
                    self.counts["encode_errors"] += 1

    def _send_message(self, topic: str, message: dict, stamp_ns: int) -> None:
        self._json[topic].log(message, log_time=stamp_ns)
        overlay_changed, log = False, None
        if topic == ASSISTANT_TOPIC:
            self.overlay.text, overlay_changed = message["text"], True
            if message["is_final"]:
                log = (LogLevel.Info, "assistant", f"turn {message['turn_index']}: {message['text']}")
        elif topic == GUIDANCE_TOPIC:
            # A new response clears the previous one's boxes; the boxes of this one come with its events.
            overlay_changed = bool(message["regions"]) or message["event"] == NEW_RESPONSE_EVENT
            if overlay_changed:
                self.overlay.regions = message["regions"]
            level = LogLevel.Warning if message["event"] in WARNING_EVENTS else LogLevel.Info
            log = (level, "guidance", f"{message['event']}: {message['summary']}")
        if log is not None:
            stamp = Timestamp(sec=stamp_ns // NS_PER_S, nsec=stamp_ns % NS_PER_S)
            self._log.log(Log(timestamp=stamp, level=log[0], name=log[1], message=log[2]), log_time=stamp_ns)
        if overlay_changed:
            self._annotations.log(self.overlay.annotations(stamp_ns), log_time=stamp_ns)
        with self._cond:
            self.counts["messages_sent"] += 1

    def _send_frame(self, frame: CameraFrame) -> None:
        data = frame.jpeg or encode_compressed(frame.rgb, "jpeg", quality=self.jpeg_quality)
        if frame.rgb is not None:
            frame.height, frame.width = frame.rgb.shape[:2]
        if frame.width:
            self.overlay.width, self.overlay.height = frame.width, frame.height
        stamp = Timestamp(sec=frame.stamp_ns // NS_PER_S, nsec=frame.stamp_ns % NS_PER_S)
        self._camera.log(CompressedImage(timestamp=stamp, frame_id=frame.frame_id, data=data, format="jpeg"),
                         log_time=frame.stamp_ns)
        with self._cond:
            self.counts["camera_frames_sent"] += 1
