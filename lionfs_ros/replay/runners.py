"""Which runner a replay mode uses. Imports stay inside so each mode loads only what it needs."""
from __future__ import annotations


class RunnerUnavailable(RuntimeError):
    """The mode needs a part this installation does not have (the engine, rclpy)."""


class RunnerFailed(RuntimeError):
    """The assistant could not be started (model not loadable, engine settings refused, node did not come up)."""


def make_runner(settings):
    if settings.mode == "recorded":
        from lionfs_ros.replay.recorded_runner import RecordedRunner

        return RecordedRunner()
    if settings.mode == "deterministic":
        from lionfs_ros.replay.replay_runner import DeterministicRunner

        return DeterministicRunner(settings)
    if settings.mode == "live":
        try:
            from lionfs_ros.replay.live_replay import LiveRunner
        except ImportError as err:
            raise RunnerUnavailable(f"live mode needs rclpy and the lionfs_ros interfaces: {err}") from err
        return LiveRunner(settings)
    raise ValueError(f"unknown replay mode {settings.mode!r}")
