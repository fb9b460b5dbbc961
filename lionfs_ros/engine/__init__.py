"""ROS-free online runtime: the LION-FS stream engine (fast + slow thinker) and stream health.

The engine never imports rclpy; nodes, replay, benchmarks and tests drive the same code. Names
load lazily, so ``lionfs_ros.engine.stream_health`` (used by light nodes) does not pull in torch.
The thinking template, keyframe tokens and region proposer are the model's (``lionfs_ros.model``).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "EngineConfig": "config", "EngineConfigError": "config", "KeyframeConfig": "config", "RegionConfig": "config",
    "ContextFork": "context",
    "StreamEngine": "engine", "FastStep": "fast_thinker", "FastThinker": "fast_thinker", "StreamGroup": "multi_stream",
    "HistoryFrame": "keyframes", "select_keyframes": "keyframes",
    "LocalSlowThinker": "slow_thinker", "SlowThinker": "slow_thinker", "SlowThinkRequest": "slow_thinker",
    "SlowThinkResult": "slow_thinker",
    "Decision": "types", "FrameError": "types", "Region": "types", "ResponseUpdate": "types",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lionfs_ros.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
