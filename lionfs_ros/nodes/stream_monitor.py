"""stream_monitor: watches a camera topic and reports its health.

Publishes GuidanceEvents (stream started / stalled / frames dropped / bad input) on `guidance`
and a status on /diagnostics. Bad messages are counted and logged, never fatal.
"""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from lionfs_ros.config import StreamMonitorParams
from lionfs_ros.engine.stream_health import StreamHealth
from lionfs_ros.msg import GuidanceEvent
from lionfs_ros.nodes.camera_input import CameraInput, stamp_seconds
from lionfs_ros.nodes.diagnostics import DIAGNOSTICS_TOPIC, diagnostic_array
from lionfs_ros.nodes.params import declare_params

GUIDANCE_TOPIC = "guidance"
# Stall checks run this many times per stall timeout, so a stall is reported within ~10% of it.
STALL_CHECKS_PER_TIMEOUT = 10
# Seconds between repeated log lines about bad input.
BAD_INPUT_LOG_PERIOD = 5.0
EVENT_TYPES = {"started": GuidanceEvent.STREAM_STARTED, "resumed": GuidanceEvent.STREAM_STARTED,
               "stalled": GuidanceEvent.STREAM_STALLED}


class StreamMonitor(Node):
    def __init__(self, **kwargs):
        super().__init__("stream_monitor", **kwargs)
        self.params = declare_params(self, StreamMonitorParams)
        p = self.params
        self.health = StreamHealth(stall_timeout=p.stall_timeout, expected_rate=p.expected_rate)
        self._last_header = None
        self._reported_drops = 0
        self._reported_bad = 0
        self.events = self.create_publisher(GuidanceEvent, GUIDANCE_TOPIC, 10)
        self.diagnostics = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.camera = CameraInput(self, p, self._on_frame, self._on_reject)
        self.create_timer(p.stall_timeout / STALL_CHECKS_PER_TIMEOUT, self._check_stall)
        self.create_timer(p.diagnostics_period, self._report)
        self.get_logger().info(
            f"watching {self.camera.resolved_topic} ({p.image_transport}, {p.reliability}); "
            f"events on {self.events.topic_name}")

    def _now(self) -> float:
        return stamp_seconds(self.get_clock().now().to_msg())

    def _on_frame(self, rgb, header, receive_time: float) -> None:
        self._last_header = header
        self.health.frame(receive_time, stamp_seconds(header.stamp))

    def _on_reject(self, reason: str, detail: str, header) -> None:
        self.health.bad_frame(reason, stamp_seconds(header.stamp))
        self.get_logger().warning(
            f"rejected a message on {self.camera.resolved_topic}: {detail} "
            f"({self.health.bad_frames} rejected so far)", throttle_duration_sec=BAD_INPUT_LOG_PERIOD)

    def _check_stall(self) -> None:
        now = self._now()
        for event in self.health.poll(now):
            if event.kind == "stalled":
                summary = f"no frame for {event.value:.1f} s on {self.camera.resolved_topic}"
                self.get_logger().warning(summary)
            elif event.kind == "resumed":
                summary = f"stream resumed on {self.camera.resolved_topic} after {event.value:.1f} s"
            else:
                summary = f"stream started on {self.camera.resolved_topic}"
            self._publish_event(EVENT_TYPES[event.kind], summary, score=event.value)

    def _report(self) -> None:
        h = self.health
        new_drops, new_bad = h.dropped_estimate - self._reported_drops, h.bad_frames - self._reported_bad
        if new_drops > 0:
            self._publish_event(GuidanceEvent.FRAMES_DROPPED, f"{new_drops} frame(s) missing from the stamps",
                                count=new_drops)
        if new_bad > 0:
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(h.bad_reasons.items()))
            self._publish_event(GuidanceEvent.BAD_INPUT, f"{new_bad} message(s) rejected ({reasons})", count=new_bad)
        self._reported_drops, self._reported_bad = h.dropped_estimate, h.bad_frames
        now = self._now()
        level, message = self._status(now)
        values = {
            "topic": self.camera.resolved_topic, "rate_hz": h.rate(now), "frames_received": h.frames,
            "frames_rejected": h.bad_frames, "frames_dropped_estimate": h.dropped_estimate,
            "stamp_regressions": h.stamp_regressions, "last_gap_s": h.last_gap, "max_gap_s": h.max_gap,
            "stalled": h.stalled,
        }
        values.update({f"rejected_{k}": v for k, v in sorted(h.bad_reasons.items())})
        self.diagnostics.publish(diagnostic_array(
            self.get_clock().now().to_msg(), f"{self.get_name()}: camera input", self.params.stream_id,
            level, message, values))

    def _status(self, now: float) -> tuple[str, str]:
        h = self.health
        if h.frames == 0:
            return ("warn" if h.bad_frames == 0 else "error"), "no valid frame received yet"
        if h.stalled:
            return "error", f"stalled: no frame for {now - h.last_receive_time:.1f} s"
        if h.bad_frames or h.dropped_estimate:
            return "warn", f"{h.bad_frames} rejected, ~{h.dropped_estimate} dropped"
        return "ok", f"{h.rate(now):.1f} Hz"

    def _publish_event(self, event_type: int, summary: str, score: float = 0.0, count: int = 0) -> None:
        msg = GuidanceEvent(stream_id=self.params.stream_id, event_type=event_type, score=float(score),
                            count=count, summary=summary)
        if self._last_header is not None:
            msg.header = self._last_header
        else:
            msg.header.stamp = self.get_clock().now().to_msg()
        self.events.publish(msg)
