"""Where ROS 2 traffic may go, decided before rclpy starts.

DDS discovery multicasts out of the machine by default. Every entry point of this package
calls `keep_discovery_local()` before `rclpy.init()`: unless the operator chose a discovery
range explicitly (a robot talking to its base station), traffic stays on this host.
"""
from __future__ import annotations

import os
from typing import MutableMapping

DISCOVERY_RANGE_VAR = "ROS_AUTOMATIC_DISCOVERY_RANGE"
LOCAL_RANGE = "LOCALHOST"


def keep_discovery_local(env: MutableMapping[str, str] | None = None, force: bool = False) -> str:
    """Set the discovery range to LOCALHOST unless already chosen (always, if `force`).

    Returns the range in effect. `force` is for the demo and tests, which must never reach
    another host whatever the caller's environment says.
    """
    env = os.environ if env is None else env
    if force or not env.get(DISCOVERY_RANGE_VAR):
        env[DISCOVERY_RANGE_VAR] = LOCAL_RANGE
    return env[DISCOVERY_RANGE_VAR]


def local_ros_env(domain_id: int | None = None, base: MutableMapping[str, str] | None = None) -> dict:
    """An environment for child processes: discovery on this host, optionally its own domain."""
    env = dict(os.environ if base is None else base)
    keep_discovery_local(env, force=True)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    return env
