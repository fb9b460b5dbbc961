"""Declare a node's ROS parameters from its dataclass in lionfs_ros.config, and read them back.

What a `ros2 param` user expects: each parameter carries a descriptor (description, allowed
values, a numeric range, read_only for those read once at configure), an integer is accepted
where a float is declared (`threshold: 1`, `-p general_fps:=2`, `ros2 param set ... 1`), and a
bad or unknown value stops the node with one line naming the parameter, not a traceback.
"""
from __future__ import annotations

import sys
from dataclasses import fields

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from lionfs_ros.config import (
    NODE_PARAMS, ROS_BUILTIN_PARAMS, ROS_BUILTIN_PREFIXES, ConfigError, build_params, check_value)

INT64_MAX = 2**63 - 1


def descriptor(spec, read_only: bool) -> ParameterDescriptor:
    """The ParameterDescriptor of one dataclass field: help, choices, range, read_only."""
    choices, minimum, maximum = (spec.metadata.get(key) for key in ("choices", "minimum", "maximum"))
    out = ParameterDescriptor(description=spec.metadata.get("help", ""),
                              additional_constraints=f"one of {list(choices)}" if choices else "",
                              read_only=read_only)
    if minimum is None and maximum is None:
        return out
    if isinstance(spec.default, float):
        out.floating_point_range = [FloatingPointRange(
            from_value=float(-sys.float_info.max if minimum is None else minimum),
            to_value=float(sys.float_info.max if maximum is None else maximum), step=0.0)]
    elif isinstance(spec.default, int) and not isinstance(spec.default, bool):
        out.integer_range = [IntegerRange(from_value=int(-INT64_MAX if minimum is None else minimum),
                                          to_value=int(INT64_MAX if maximum is None else maximum), step=0)]
    return out


def declare_params(node: Node, params_cls: type, dynamic: tuple[str, ...] = ()):
    """Declare every field of `params_cls` on `node` and return the validated dataclass.

    Fields not in `dynamic` are read_only (read once; change them with a restart). Raises
    ConfigError naming the node and parameter for a value (from --params-file or -p) of the
    wrong type, out of range, or a parameter no lionfs node declares.
    """
    where = f"node {node.get_fully_qualified_name()}"
    specs = fields(params_cls)
    overrides = node._parameter_overrides  # rclpy keeps --params-file / -p values here until declared
    for spec in specs:  # YAML and -p give 1 for 1.0: widen, as check_value does
        given = overrides.get(spec.name)
        if isinstance(spec.default, float) and given is not None and given.type_ == Parameter.Type.INTEGER:
            overrides[spec.name] = Parameter(spec.name, Parameter.Type.DOUBLE, float(given.value))
    values = {}
    for spec in specs:
        try:
            node.declare_parameter(spec.name, spec.default, descriptor(spec, spec.name not in dynamic))
        except (InvalidParameterTypeException, InvalidParameterValueException) as err:
            given = overrides[spec.name].value if spec.name in overrides else spec.default
            check_value(params_cls, spec.name, given, where)  # the clear message, if it has one
            raise ConfigError(f"{where}: {spec.name}: {err}") from None
        values[spec.name] = node.get_parameter(spec.name).value
    _refuse_unknown(set(overrides) - {spec.name for spec in specs}, params_cls, where)
    node.add_pre_set_parameters_callback(lambda changes: widen_ints(params_cls, changes))
    return build_params(params_cls, values, where=where)


def widen_ints(params_cls: type, changes: list[Parameter]) -> list[Parameter]:
    """`ros2 param set /node threshold 1`: an integer for a float parameter is that float."""
    floats = {spec.name for spec in fields(params_cls) if isinstance(spec.default, float)}
    return [Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
            if p.name in floats and p.type_ == Parameter.Type.INTEGER else p for p in changes]


def _refuse_unknown(names: set[str], params_cls: type, where: str) -> None:
    """A parameter given to this node that no lionfs node declares is a typo: refuse it, as
    `lionfs bringup` does. Another lionfs node's parameter (a shared '/**' section) is fine."""
    others = {spec.name for cls in NODE_PARAMS.values() for spec in fields(cls)}
    for name in sorted(names):
        if name in ROS_BUILTIN_PARAMS or name.startswith(ROS_BUILTIN_PREFIXES) or name in others:
            continue
        check_value(params_cls, name, None, where)  # raises: unknown parameter, with a suggestion


def validation_result(params_cls: type, changes: list[Parameter], dynamic: tuple[str, ...], where: str):
    """(ok, reason, checked values) for a batch of changes, all checked before any is applied."""
    checked = {}
    for change in changes:
        if change.name not in {spec.name for spec in fields(params_cls)}:
            continue  # builtins (use_sim_time) and undeclared names are rclpy's business
        if change.name not in dynamic:
            return False, f"{change.name} is read at configure; only {', '.join(dynamic)} change at run time", {}
        try:
            checked[change.name] = check_value(params_cls, change.name, change.value, where)
        except ValueError as err:
            return False, str(err), {}
    return True, "", checked


__all__ = ["ConfigError", "declare_params", "validation_result", "widen_ints"]
