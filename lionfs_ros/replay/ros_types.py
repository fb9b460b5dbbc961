"""Message types for reading and writing bags with `rosbags`, without a ROS installation.

A bag's own embedded definitions (mcap schemas, the sqlite3 `message_definitions` table) are the
truth for that bag: a camera driver may use a newer or older sensor_msgs than ours. Types the bag
does not describe come from rosbags' ROS 2 Kilted store plus this package's interfaces, read from
the same `.msg` files the ROS build generates code from, so the two can never disagree.
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "lionfs_ros"
# Order matters: nested types first is not required by rosbags, but every name must resolve.
CUSTOM_MESSAGES = ("RegionOfInterest2D", "AssistantMessage", "GuidanceEvent", "UserQuery")


class MessageTypesError(RuntimeError):
    """Our interface definitions cannot be found or parsed."""


def msg_dir() -> Path:
    """The directory holding this package's .msg files: the source tree, else an install's share dir."""
    candidates = [Path(__file__).resolve().parents[2] / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / PACKAGE / "msg")
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / "msg")
    for candidate in candidates:
        if (candidate / f"{CUSTOM_MESSAGES[0]}.msg").is_file():
            return candidate
    raise MessageTypesError(f"cannot find {PACKAGE}'s .msg files; looked in {', '.join(map(str, candidates))}")


@lru_cache(maxsize=1)
def custom_type_definitions() -> dict:
    """rosbags type definitions (Typesdict) of lionfs_ros/msg/*, parsed from the .msg files."""
    from rosbags.typesys import get_types_from_msg

    directory = msg_dir()
    types: dict = {}
    for name in CUSTOM_MESSAGES:
        types.update(get_types_from_msg((directory / f"{name}.msg").read_text(), f"{PACKAGE}/msg/{name}"))
    return types


def base_store():
    """rosbags' store of the ROS distribution we run on (Jazzy on rosbags releases before Kilted)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(getattr(Stores, "ROS2_KILTED", Stores.ROS2_JAZZY))


def default_typestore():
    """Kilted's standard messages plus lionfs_ros's, for writing bags and for bags without definitions."""
    store = base_store()
    store.register(custom_type_definitions())
    return store


def typestore_for(embedded: dict):
    """A store where the bag's embedded definitions win and everything else falls back to ours."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.EMPTY)
    # One register call: a later call would refuse a fallback type that differs from an embedded one.
    store.register({**base_store().fielddefs, **custom_type_definitions(), **embedded})
    return store
