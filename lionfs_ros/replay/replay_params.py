"""The assistant's settings for a replay: lionfs_node's parameters, so both modes run what a robot runs.

Start from the node's defaults (`LionFSNodeParams`), apply a ROS 2 params file (`/**` and
`lionfs_node` sections, checked like `lionfs bringup` checks them), then the command line's
--model/--device/--dtype/--threshold. Deterministic mode builds its engine from the result;
live mode passes the same file and overrides to the node it starts.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from lionfs_ros.config import (NODE_PARAMS, ROS_BUILTIN_PARAMS, ROS_BUILTIN_PREFIXES, LionFSNodeParams, build_params,
                               load_params_file, node_fqn, params_for_node,
                               validate_params_file)

NODE_NAME = "lionfs_node"


def command_line_overrides(settings) -> dict:
    """Only what the user actually gave on the command line."""
    overrides = {"model_path": settings.model, "device": settings.device, "dtype": settings.dtype,
                 "threshold": settings.threshold}
    return {k: v for k, v in overrides.items() if v is not None}


def file_values(path: Path | None) -> dict:
    if path is None:
        return {}
    # Same check as `lionfs bringup`: a typo fails with the key named; '/**' may hold other nodes' parameters.
    # lionfs_node first: an unknown '/**' key is reported against its parameters (the closest-match hint).
    validate_params_file(path, {NODE_NAME: NODE_NAME, **{name: name for name in NODE_PARAMS if name != NODE_NAME}})
    sections = load_params_file(path)
    values = params_for_node(sections, node_fqn(NODE_NAME))
    known = {f.name for f in fields(LionFSNodeParams)}
    # Parameters of other nodes in a shared '/**' section and ROS's own ones are not the engine's business.
    return {k: v for k, v in values.items() if k in known
            and k not in ROS_BUILTIN_PARAMS and not k.startswith(ROS_BUILTIN_PREFIXES)}


def node_params(settings) -> LionFSNodeParams:
    """Raises lionfs_ros.config.ConfigError naming the file and key for a bad value."""
    where = str(settings.params_file) if settings.params_file else "command line"
    values = {**file_values(settings.params_file), **command_line_overrides(settings)}
    return build_params(LionFSNodeParams, values, where)
