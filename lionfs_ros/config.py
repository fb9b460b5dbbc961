"""Typed parameters of the nodes, and validation of ROS 2 params files against them.

Each node declares its ROS parameters from one dataclass here (name, default, type,
description, allowed values), and `lionfs bringup` checks a params file against the same
dataclasses before starting anything, so a typo fails with the file and key named instead of
a node silently running on a default.
"""
from __future__ import annotations

import dataclasses
import difflib
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


def param(default: Any, help: str, choices: tuple | None = None, minimum: float | None = None):
    """A dataclass field that is also a documented ROS parameter."""
    return field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum})


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


# Executable name -> its parameter dataclass. Nodes register here as they are added.
NODE_PARAMS: dict[str, type] = {"stream_monitor": StreamMonitorParams}


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
    choices, minimum = spec.metadata.get("choices"), spec.metadata.get("minimum")
    if choices and value not in choices:
        raise ConfigError(f"{where}: {name} must be one of {list(choices)}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: {name} must be >= {minimum}, got {value!r}")
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


def validate_params_file(path: str | Path, executables: dict[str, str]) -> None:
    """Check a params file against the nodes that will read it.

    `executables` maps node name -> executable. A section named after a node is checked
    against that node's parameters; the '/**' section against the union of all of them.
    """
    sections = load_params_file(path)
    known = {name: NODE_PARAMS[exe] for name, exe in executables.items() if exe in NODE_PARAMS}
    for section, params in sections.items():
        node = section.lstrip("/")
        for name, value in params.items():
            if name in ROS_BUILTIN_PARAMS or name.startswith(ROS_BUILTIN_PREFIXES):
                continue
            where = f"{path}: {section}.ros__parameters.{name}"
            if section == WILDCARD_NODE:
                owners = [cls for cls in known.values() if name in {f.name for f in fields(cls)}]
                if not owners and known:
                    check_value(next(iter(known.values())), name, value, where)
                for cls in owners:
                    check_value(cls, name, value, where)
            elif node in known:
                check_value(known[node], name, value, where)


def _flatten(params: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
