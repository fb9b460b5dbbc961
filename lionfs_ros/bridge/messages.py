"""Our ROS messages as JSON for WebSocket clients, and the JSON schemas that describe them.

The converters read fields by name (rclpy and rosbags messages alike) and import no ROS code.
Every stamp is the source frame's: `stamp` is the message header's, never the bridge's clock.
"""
from __future__ import annotations

from typing import Any

# Channel topics as clients see them (the page, the layout in config/ and the docs use these).
ASSISTANT_TOPIC = "/assistant"
GUIDANCE_TOPIC = "/guidance"
DIAGNOSTICS_TOPIC = "/diagnostics"
CAMERA_TOPIC = "/camera/compressed"
ANNOTATIONS_TOPIC = "/camera/annotations"
LOG_TOPIC = "/assistant/log"  # final answers and guidance events as foxglove.Log, for the app's Log panel

ROLE_NAMES = {0: "assistant", 1: "narration", 2: "query_answer"}
EVENT_NAMES = {0: "STREAM_STARTED", 1: "STREAM_STALLED", 2: "RESPONSE_TRIGGERED", 3: "RESPONSE_COMPLETED",
               4: "QUERY_RECEIVED", 5: "FRAMES_DROPPED", 6: "DEGRADED_MODE", 7: "DEGRADED_RECOVERED", 8: "BAD_INPUT",
               9: "STREAM_RESET", 10: "QUERY_EXPIRED"}
LEVEL_NAMES = {0: "ok", 1: "warn", 2: "error", 3: "stale"}
NS_PER_S = 1_000_000_000

_STAMP = {"type": "object", "description": "the source camera frame's stamp",
          "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}}, "required": ["sec", "nsec"]}
_REGION = {"type": "object", "description": "normalized: (0, 0) top-left, (1, 1) bottom-right of the image",
           "properties": {key: {"type": "number"} for key in ("x_min", "y_min", "x_max", "y_max", "score")}
           | {"label": {"type": "string"}}}

ASSISTANT_SCHEMA = {
    "title": "lionfs_ros/AssistantMessage", "type": "object",
    "description": "One utterance, streamed: partials (is_final false, the full text so far), then one final.",
    "properties": {
        "stamp": _STAMP, "frame_id": {"type": "string"}, "stream_id": {"type": "string"},
        "turn_index": {"type": "integer"}, "role": {"type": "string", "enum": list(ROLE_NAMES.values())},
        "text": {"type": "string"}, "is_final": {"type": "boolean"}, "sequence": {"type": "integer"},
        "trigger_score": {"type": "number"}, "query": {"type": "string"}, "query_id": {"type": "string"},
        "decision_latency_s": {"type": "number"}, "generation_latency_s": {"type": "number"},
        "num_tokens": {"type": "integer"},
        "error": {"type": "string", "description": "why the turn failed (empty when it was answered)"},
    },
    "required": ["stamp", "turn_index", "text", "is_final", "sequence"],
}
GUIDANCE_SCHEMA = {
    "title": "lionfs_ros/GuidanceEvent", "type": "object",
    "description": "Something happened in the assistant or its input; regions are the keyframe boxes of a response.",
    "properties": {
        "stamp": _STAMP, "frame_id": {"type": "string"}, "stream_id": {"type": "string"},
        "event_type": {"type": "integer"}, "event": {"type": "string", "enum": list(EVENT_NAMES.values())},
        "turn_index": {"type": "integer"}, "score": {"type": "number"}, "count": {"type": "integer"},
        "summary": {"type": "string"}, "regions": {"type": "array", "items": _REGION},
    },
    "required": ["stamp", "event", "regions"],
}
DIAGNOSTICS_SCHEMA = {
    "title": "diagnostic_msgs/DiagnosticArray", "type": "object",
    "properties": {
        "stamp": _STAMP,
        "status": {"type": "array", "items": {"type": "object", "properties": {
            "level": {"type": "string", "enum": list(LEVEL_NAMES.values())}, "name": {"type": "string"},
            "message": {"type": "string"}, "hardware_id": {"type": "string"},
            "values": {"type": "object", "additionalProperties": {"type": "string"}}}}},
    },
    "required": ["stamp", "status"],
}


def stamp_dict(stamp) -> dict[str, int]:
    return {"sec": int(stamp.sec), "nsec": int(stamp.nanosec)}


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def _seconds(duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


def assistant_json(msg) -> dict[str, Any]:
    return {
        "stamp": stamp_dict(msg.header.stamp), "frame_id": msg.header.frame_id, "stream_id": msg.stream_id,
        "turn_index": int(msg.turn_index), "role": ROLE_NAMES.get(int(msg.role), "assistant"), "text": msg.text,
        "is_final": bool(msg.is_final), "sequence": int(msg.sequence), "trigger_score": float(msg.trigger_score),
        "query": msg.query, "query_id": msg.query_id, "decision_latency_s": _seconds(msg.decision_latency),
        "generation_latency_s": _seconds(msg.generation_latency), "num_tokens": int(msg.num_tokens),
        "error": msg.error,
    }


def region_json(region) -> dict[str, Any]:
    return {"x_min": float(region.x_min), "y_min": float(region.y_min), "x_max": float(region.x_max),
            "y_max": float(region.y_max), "label": region.label, "score": float(region.score)}


def guidance_json(msg) -> dict[str, Any]:
    return {
        "stamp": stamp_dict(msg.header.stamp), "frame_id": msg.header.frame_id, "stream_id": msg.stream_id,
        "event_type": int(msg.event_type), "event": EVENT_NAMES.get(int(msg.event_type), str(msg.event_type)),
        "turn_index": int(msg.turn_index), "score": float(msg.score), "count": int(msg.count),
        "summary": msg.summary, "regions": [region_json(r) for r in msg.regions],
    }


def diagnostics_json(msg) -> dict[str, Any]:
    return {
        "stamp": stamp_dict(msg.header.stamp),
        "status": [{"level": LEVEL_NAMES.get(int.from_bytes(bytes(s.level), "little") if isinstance(s.level, bytes)
                                             else int(s.level), "error"),
                    "name": s.name, "message": s.message, "hardware_id": s.hardware_id,
                    "values": {kv.key: kv.value for kv in s.values}} for s in msg.status],
    }
