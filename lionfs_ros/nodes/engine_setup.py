"""Build the engine a lionfs_node runs (model, local or remote slow thinker) and report on it."""
from __future__ import annotations

from dataclasses import replace

from lionfs_ros.config import LionFSNodeParams, engine_config
from lionfs_ros.nodes.diagnostics import diagnostic_array

BYTES_PER_MIB = 1024 * 1024


def build_engine(node, params: LionFSNodeParams, callback_group, streams=()):
    """(engine, remote slow thinker or None, one-line description).

    ``streams`` (``config.StreamSpec``s): several streams on one model, a ``StreamGroup``; none: a ``StreamEngine``."""
    from lionfs_ros.engine import StreamEngine, StreamGroup
    from lionfs_ros.model_loading import load_for_inference
    from lionfs_ros.nodes.remote_slow_thinker import RemoteSlowThinker

    model, path, device = load_for_inference(params.model_path, params.device, params.dtype)
    if streams:
        # camera_size: not for a group (its frames go through the batched towers, not each stream's own)
        group = StreamGroup(model, {s.stream_id: replace(engine_config(params), camera_size=None) for s in streams})
        names = ", ".join(f"{s.stream_id} ({s.image_topic})" for s in streams)
        return group, None, f"model {path} on {device}, {len(streams)} streams: {names}, slow thinker local"
    remote = None
    if params.slow_thinker == "remote":
        remote = RemoteSlowThinker(node, params.slow_think_action, params.remote_timeout, callback_group)
    engine = StreamEngine(model, engine_config(params), slow_thinker=remote)
    where = f"remote ({remote.action_name})" if remote else "local"
    size = engine.cfg.camera_size
    warmed = f", warmed up for camera {size[0]}x{size[1]}" if size else ""
    return engine, remote, f"model {path} on {device}, slow thinker {where}{warmed}"


def engine_diagnostics(node, stats: dict, health, now: float, remote, warning: str = ""):
    """One DiagnosticStatus of one stream (``node``: its ``StreamPort``) with the engine's and the input's numbers; `warning` (e.g. a recent
    stream reset) makes it WARN when nothing worse is going on."""
    values = {
        "topic": node.camera.resolved_topic if node.camera else "",
        "input_rate_hz": health.rate(now), "frames_received": health.frames, "frames_rejected": health.bad_frames,
        "stalled": health.stalled,
    }
    values.update({key: value for key, value in stats.items() if isinstance(value, (int, float, str, bool))})
    for reason, count in health.bad_reasons.items():  # decode failures, beside the engine's own refusals
        values[f"rejected_{reason}"] = values.get(f"rejected_{reason}", 0) + count
    values["gpu_memory_mib"] = _gpu_memory_mib()
    level, message = "ok", "running"
    if remote is not None and not remote.available:
        level, message = "warn", f"degraded: {remote.status_text()}"
    elif health.stalled:
        level, message = "warn", "camera stalled"
    elif health.frames == 0:
        level, message = "warn", "no frame yet"
    elif warning:
        level, message = "warn", warning
    return diagnostic_array(node.get_clock().now().to_msg(), f"{node.get_name()}: assistant", node.stream_id,
                            level, message, values)


def _gpu_memory_mib() -> float:
    import torch

    if not torch.cuda.is_available():
        return 0.0
    return torch.cuda.memory_allocated() / BYTES_PER_MIB
