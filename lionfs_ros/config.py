"""Typed parameters of the nodes, and validation of ROS 2 params files against them.

Each node declares its ROS parameters from one dataclass here (name, default, type,
description, allowed values), and `lionfs bringup` checks a params file against the same
dataclasses before starting anything, so a typo fails with the file and key named instead of
a node silently running on a default.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

# Parameters every rclpy node accepts besides its own.
ROS_BUILTIN_PARAMS = ("use_sim_time", "start_type_description_service")
ROS_BUILTIN_PREFIXES = ("qos_overrides.",)
WILDCARD_NODE = "/**"


class ConfigError(ValueError):
    """A configuration file or value is wrong; the message names the file and the key."""


def param(default: Any, help: str, choices: tuple | None = None, minimum: float | None = None,
          maximum: float | None = None):
    """A dataclass field that is also a documented ROS parameter."""
    return field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum, "maximum": maximum})


@dataclass
class CameraInputParams:
    """How a node listens to the camera."""

    image_topic: str = param("image_raw", "Camera topic, relative to the node namespace (remappable).")
    image_transport: str = param(
        "raw", "'raw' subscribes sensor_msgs/Image on image_topic, 'compressed' "
        "sensor_msgs/CompressedImage on image_topic + '/compressed'.", choices=("raw", "compressed"))
    reliability: str = param(
        "best_effort", "Subscription reliability. best_effort matches every camera driver "
        "(SensorData QoS); reliable only matches reliable publishers.", choices=("best_effort", "reliable"))
    qos_depth: int = param(5, "Subscription queue depth (messages kept by the middleware).", minimum=1)
    stream_id: str = param("camera", "Name of this stream in the messages the node publishes.")


@dataclass
class StreamMonitorParams(CameraInputParams):
    """stream_monitor: watches a camera stream and reports its health."""

    stall_timeout: float = param(1.0, "Seconds without a frame before STREAM_STALLED.", minimum=0.01)
    expected_rate: float = param(0.0, "Camera rate in Hz for drop estimation; 0 learns it from the stamps.", minimum=0.0)
    diagnostics_period: float = param(1.0, "Seconds between /diagnostics and aggregated event messages.", minimum=0.05)


@dataclass
class ModelParams:
    """Which model a node loads, on which device."""

    model_path: str = param("", "Model directory (config.json + safetensors) or hub id (org/name, from the hub cache); empty = the bundled demo model.")
    device: str = param("auto", "'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'.")
    dtype: str = param("auto", "'auto' (bf16 on GPU, fp32 on CPU), 'float32', 'bfloat16' or 'float16'.",
                       choices=("auto", "float32", "bfloat16", "float16"))
    max_new_tokens: int = param(0, "Longest answer the slow thinker writes, in tokens; 0 = the model's "
                                "stream.max_new_tokens (100 for a converted VideoLLM-online).", minimum=0)
    slow_path: str = param("auto", "Keyframe thinking template before answers: 'auto' as the model was trained "
                           "(config.json thinking.mode), 'on' always, 'off' never.", choices=("auto", "on", "off"))


MODEL_THRESHOLD = -1.0  # the threshold parameter's "use the model's calibrated value" (a ROS parameter has no None)


def engine_threshold(value: float) -> float | None:
    """A threshold parameter as the engine takes it: None (the model's own) for any negative value."""
    return None if value < 0 else float(value)


@dataclass
class LionFSNodeParams(CameraInputParams, ModelParams):
    """lionfs_node: the assistant. Threshold and trigger policy can change at run time."""

    autostart: bool = param(True, "Configure and activate on start (false: wait for lifecycle transitions).")
    threshold: float = param(MODEL_THRESHOLD, "Speak when P(frame-interval token) falls below this (higher = more "
                             "talkative); -1: the model's own calibrated value (config.json stream.interval_threshold).",
                             minimum=MODEL_THRESHOLD, maximum=1.0)
    trigger_policy: str = param("skip", "A trigger while an answer is being written: skip it, queue it "
                                "(one pending) or replace the pending one.", choices=("skip", "queue", "replace"))
    general_fps: float = param(2.0, "Rate of the general vision encoder (frames in between feed only the ego encoder).",
                               minimum=0.1)
    ego_fps: float = param(0.0, "Rate of the egocentric encoder; 0: general_fps x the model's ego.frames_per_frame "
                           "(the rate it was trained at).", minimum=0.0)
    frame_queue_size: int = param(2, "Frames waiting for the fast thinker; the newest wins when full.", minimum=1)
    camera_width: int = param(0, "The camera's frame width in pixels, with camera_height, when known before the first "
                              "frame: the engine warms up for that size at configure (the first frame is then as fast "
                              "as the next). 0: unknown (the first frame of each size pays ~3 s on a GPU). One stream "
                              "only.", minimum=0, maximum=8192)
    camera_height: int = param(0, "The camera's frame height in pixels (see camera_width); 0: unknown.",
                               minimum=0, maximum=8192)
    kv_budget_tokens: int = param(3072, "KV-cache budget in tokens; older frames are evicted beyond it. Must leave "
                                  "room under the backbone's max_position_embeddings for one answer.", minimum=512)
    weights: str = param("native", "Decoder weights on a GPU: 'native' (the model's dtype) or 'fp8' (weight-only FP8, "
                         "quantized at configure; compute capability >= 8.9 with Triton: H100/H200, L4/L40).",
                         choices=("native", "fp8"))
    linear_kernel: str = param("auto", "The decoder's bf16 products and output head on a GPU: 'auto' (per weight shape "
                               "the faster of cuBLAS and the engine's few-rows Triton kernel, timed at configure) or "
                               "'torch' (cuBLAS always).", choices=("auto", "torch"))
    slow_thinker: str = param("local", "'local' (in this process) or 'remote' (slow_thinker_node over the "
                              "slow_think action).", choices=("local", "remote"))
    slow_think_action: str = param("slow_think", "Action name of the remote slow thinker (relative, remappable).")
    remote_timeout: float = param(30.0, "Seconds to wait for a remote answer before giving up on it.", minimum=0.1)
    stall_timeout: float = param(2.0, "Seconds without a frame before STREAM_STALLED.", minimum=0.01)
    diagnostics_period: float = param(1.0, "Seconds between /diagnostics messages.", minimum=0.05)
    question_timeout: float = param(10.0, "Seconds a question waits for a camera frame to be answered at before it "
                                    "is withdrawn (QUERY_EXPIRED, final AssistantMessage with error).", minimum=0.1)
    streams: str = param("", "Several cameras on one model: comma-separated 'id' or 'id=camera_topic' entries "
                         "(e.g. 'head=/head/image_raw, wrist_left'); each stream gets its own engine context and "
                         "topics under '<id>/' (camera default '<id>/image_raw'). Empty: one stream (image_topic, "
                         "stream_id).")


@dataclass
class StreamSpec:
    """One stream of a multi-stream lionfs_node."""

    stream_id: str
    image_topic: str


STREAM_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def parse_streams(text: str, where: str = "streams") -> list[StreamSpec]:
    """The ``streams`` parameter -> its streams, in order ([] for one stream); clear errors for bad entries."""
    out: list[StreamSpec] = []
    for entry in (part.strip() for part in text.split(",")) if text.strip() else ():
        stream_id, _, topic = (piece.strip() for piece in entry.partition("="))
        if not STREAM_ID.fullmatch(stream_id):
            raise ConfigError(f"{where}: stream id {stream_id!r} (in {entry!r}) must start with a letter and hold only "
                              "letters, digits and '_' (it names the stream's topics)")
        if any(spec.stream_id == stream_id for spec in out):
            raise ConfigError(f"{where}: stream id {stream_id!r} is given twice")
        if "=" in entry and not topic:
            raise ConfigError(f"{where}: stream {stream_id!r} has an empty camera topic")
        out.append(StreamSpec(stream_id, topic or f"{stream_id}/image_raw"))
    topics = [spec.image_topic for spec in out]
    if len(set(topics)) != len(topics):
        raise ConfigError(f"{where}: two streams read the same camera topic ({topics})")
    return out


@dataclass
class SlowThinkerNodeParams(ModelParams):
    """slow_thinker_node: serves the slow_think action (edge/server split)."""

    slow_think_action: str = param("slow_think", "Action name to serve (relative, remappable).")


@dataclass
class BridgeParams(CameraInputParams):
    """bridge: the assistant's topics and the camera over the Foxglove WebSocket protocol, plus the overlay page."""

    host: str = param("127.0.0.1", "Address the WebSocket and HTTP servers bind to. 127.0.0.1 keeps them on this "
                      "machine; 0.0.0.0 (or one interface's address) exposes them to the network, unauthenticated.")
    port: int = param(8765, "Foxglove WebSocket port (the Foxglove app's default).", minimum=1, maximum=65535)
    http_port: int = param(8766, "HTTP port of the live overlay page; 0 serves no page.", minimum=0, maximum=65535)
    camera_rate: float = param(5.0, "Most camera frames per second forwarded as JPEG; 0 forwards no camera.",
                               minimum=0.0, maximum=60.0)
    jpeg_quality: int = param(80, "JPEG quality of forwarded raw frames (compressed input is passed through).",
                              minimum=1, maximum=100)
    client_backlog: int = param(256, "Messages buffered per WebSocket client; the oldest is dropped when a slow "
                                "client's buffer is full.", minimum=8)
    queue_size: int = param(64, "Messages waiting between the ROS callbacks and the WebSocket server; the oldest is "
                            "dropped when full.", minimum=4)
    diagnostics_period: float = param(1.0, "Seconds between the bridge's /diagnostics messages.", minimum=0.05)


def engine_config(params: LionFSNodeParams):
    """The engine settings a lionfs_node with these parameters runs (replay uses the same)."""
    from lionfs_ros.engine import EngineConfig

    if (params.camera_width == 0) != (params.camera_height == 0):
        raise ConfigError(f"camera_width ({params.camera_width}) and camera_height ({params.camera_height}): set both"
                          " (pixels) or neither (0: unknown)")
    return EngineConfig(
        camera_size=(params.camera_width, params.camera_height) if params.camera_width else None,
        threshold=engine_threshold(params.threshold), trigger_policy=params.trigger_policy, general_fps=params.general_fps,
        ego_fps=params.ego_fps or None, frame_queue_size=params.frame_queue_size, kv_budget_tokens=params.kv_budget_tokens,
        max_new_tokens=params.max_new_tokens or None, slow_path=params.slow_path, weights=params.weights,
        linear_kernel=params.linear_kernel)


# Executable name -> its parameter dataclass. Nodes register here as they are added.
NODE_PARAMS: dict[str, type] = {
    "stream_monitor": StreamMonitorParams,
    "lionfs_node": LionFSNodeParams,
    "slow_thinker_node": SlowThinkerNodeParams,
    "bridge": BridgeParams,
}
# Parameters that may change while a node runs (others need a restart).
DYNAMIC_PARAMS: dict[str, tuple[str, ...]] = {"lionfs_node": ("threshold", "trigger_policy")}


def param_specs(params_cls: type) -> list[dataclasses.Field]:
    return list(fields(params_cls))


def check_value(params_cls: type, name: str, value: Any, where: str) -> Any:
    """Check one parameter value against its declaration; returns it (ints widen to float)."""
    spec = {f.name: f for f in fields(params_cls)}.get(name)
    if spec is None:
        known = sorted(spec.name for spec in fields(params_cls))
        hint = difflib.get_close_matches(name, known, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{where}: unknown parameter {name!r}{suggestion}; known: {', '.join(known)}")
    expected = type(spec.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected:
        raise ConfigError(f"{where}: {name} must be {expected.__name__}, got {value!r} ({type(value).__name__})")
    choices, minimum, maximum = (spec.metadata.get(key) for key in ("choices", "minimum", "maximum"))
    if choices and value not in choices:
        raise ConfigError(f"{where}: {name} must be one of {list(choices)}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: {name} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{where}: {name} must be <= {maximum}, got {value!r}")
    return value


def build_params(params_cls: type, values: dict[str, Any], where: str = "parameters"):
    """A params dataclass from a flat dict, every value checked."""
    checked = {name: check_value(params_cls, name, value, where) for name, value in values.items()}
    return params_cls(**checked)


def load_params_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a ROS 2 params file: {node name or '/**': {flat param name: value}}."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(document, dict) or not document:
        raise ConfigError(f"{path}: expected a mapping of node names to 'ros__parameters', got {type(document).__name__}")
    sections = {}
    for node, body in document.items():
        key = f"{path}: {node}"
        if not isinstance(body, dict) or "ros__parameters" not in body:
            raise ConfigError(f"{key}: expected a 'ros__parameters' mapping under the node name")
        extra = sorted(set(body) - {"ros__parameters"})
        if extra:
            raise ConfigError(f"{key}: unexpected key(s) {extra} beside 'ros__parameters'")
        params = body["ros__parameters"]
        if not isinstance(params, dict):
            raise ConfigError(f"{key}.ros__parameters: expected a mapping, got {type(params).__name__}")
        sections[str(node)] = _flatten(params)
    return sections


def section_matches(section: str, fqn: str) -> bool:
    """Whether a params-file section applies to the node with this fully qualified name, as rcl
    matches them: 'name' means '/name' (no namespace), '/*' is one namespace level, '/**' any."""
    pattern = ""
    for token in section.strip("/").split("/"):
        pattern += {"**": "(/[^/]+)*", "*": "/[^/]+"}.get(token, "/" + re.escape(token))
    return re.fullmatch(pattern or "/", fqn) is not None


def node_fqn(name: str, namespace: str = "") -> str:
    return "/" + "/".join(part for part in (namespace.strip("/"), name) if part)


def params_for_node(sections: dict[str, dict[str, Any]], fqn: str) -> dict[str, Any]:
    """The values a node gets from a loaded params file (later sections win, as in rcl)."""
    values = {}
    for section, params in sections.items():
        if section_matches(section, fqn):
            values.update(params)
    return values


def validate_params_file(path: str | Path, executables: dict[str, str], namespace: str = "",
                         tolerated: frozenset[str] = frozenset()) -> None:
    """Check a params file against the nodes that will read it.

    `executables` maps node name -> executable; the nodes run in `namespace`. A section that
    applies to one node is checked against that node's parameters; one that applies to several
    ('/**', '/**/name' patterns) against the union of theirs, and names in `tolerated` (another
    node's parameters, when a node runs alone) pass. A section named after a node of the set
    that does not reach it under `namespace` is an error: rcl would silently ignore it.
    """
    sections = load_params_file(path)
    nodes = {node_fqn(name, namespace): NODE_PARAMS[exe] for name, exe in executables.items() if exe in NODE_PARAMS}
    for section, params in sections.items():
        owners = [cls for fqn, cls in nodes.items() if section_matches(section, fqn)]
        leaf = section.strip("/").split("/")[-1]
        if not owners:
            if leaf in executables and namespace:
                raise ConfigError(
                    f"{path}: section {section!r} does not apply to {node_fqn(leaf, namespace)} (it means "
                    f"{node_fqn(section.strip('/'))}); key it '/**/{leaf}' to work under any namespace")
            continue
        for name, value in params.items():
            if name in ROS_BUILTIN_PARAMS or name.startswith(ROS_BUILTIN_PREFIXES):
                continue
            where = f"{path}: {section}.ros__parameters.{name}"
            declared = [cls for cls in owners if name in {f.name for f in fields(cls)}]
            if not declared and name in tolerated:
                continue
            for cls in declared or owners[:1]:  # none declares it: unknown, reported against the first
                check_value(cls, name, value, where)


def _flatten(params: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
