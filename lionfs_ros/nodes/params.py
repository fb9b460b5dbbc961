"""Declare a node's ROS parameters from its dataclass in lionfs_ros.config, and read them back."""
from __future__ import annotations

from dataclasses import fields

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from lionfs_ros.config import ConfigError, build_params


def declare_params(node: Node, params_cls: type, read_only: tuple[str, ...] = ()):
    """Declare every field of `params_cls` on `node` and return the validated dataclass.

    Raises ConfigError naming the node and parameter when a value (from --params-file or -p)
    is of the wrong type or out of range.
    """
    values = {}
    for spec in fields(params_cls):
        choices = spec.metadata.get("choices")
        extra = f"one of {list(choices)}" if choices else ""
        descriptor = ParameterDescriptor(
            description=spec.metadata.get("help", ""), additional_constraints=extra,
            read_only=spec.name in read_only)
        node.declare_parameter(spec.name, spec.default, descriptor)
        values[spec.name] = node.get_parameter(spec.name).value
    return build_params(params_cls, values, where=f"node {node.get_fully_qualified_name()}")


__all__ = ["ConfigError", "declare_params"]
