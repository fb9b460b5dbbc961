"""Helpers of the replay tests (imported as `replay_helpers`; conftest.py holds the fixtures)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from lionfs_testing import REPO, VENV_BIN

ENGINE_TESTS = REPO / "test" / "engine"
MODEL_TESTS = REPO / "test" / "model"
# Engine settings the tiny model (1024 positions) can hold; the node's defaults are for real models.
TINY_PARAMS = """/**:
  ros__parameters:
    kv_budget_tokens: 700
    max_new_tokens: 6
"""
NS_PER_S = 1_000_000_000


def write_tiny_model(root: Path) -> tuple[Path, Path]:
    """A tiny real LION-FS model saved like any model directory (the engine tests' recipe), and its params."""
    for path in (ENGINE_TESTS, MODEL_TESTS):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import torch
    from engine_parts import build_model, write_tiny_parts

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        build_model(write_tiny_parts(root / "parts"), root / "model")
    finally:
        torch.set_num_threads(threads)
    params = root / "tiny.yaml"
    params.write_text(TINY_PARAMS)
    return root / "model", params


def lionfs_command() -> list[str]:
    exe = VENV_BIN / "lionfs"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "lionfs_ros.cli"]


def run_lionfs(args: list[str], timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """`lionfs ARGS` in a child process, one torch thread (two shared cores), discovery local."""
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("OMP_NUM_THREADS", "1")
    child_env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return subprocess.run(lionfs_command() + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=child_env)


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def gradient_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames that differ from each other (a moving bright bar), so each one is recognisable."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i, :, :, 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
        frames[i, :, (i * 3) % width, :] = 255
    return frames


def write_plain_bag(path: Path, storage: str, frames: np.ndarray, fps: float, *, topic: str = "/camera/image_raw",
                    compressed: bool = False, start_s: float = 1_700_000_000.0, zero_stamps: bool = False,
                    extra_topics: dict[str, list[str]] | None = None) -> Path:
    """A bag as a camera driver + `ros2 bag record` would leave it, written with plain rosbags (not our code)."""
    import cv2
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)  # an older distro's definitions than ours, on purpose
    types = store.types
    header_cls, time_cls = types["std_msgs/msg/Header"], types["builtin_interfaces/msg/Time"]
    msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        image_conn = writer.add_connection(topic, msgtype, typestore=store)
        extra = {name: writer.add_connection(name, "std_msgs/msg/String", typestore=store)
                 for name in (extra_topics or {})}
        for i, rgb in enumerate(frames):
            t = start_s + i / fps
            ns = round(t * NS_PER_S)
            stamp = time_cls(sec=0, nanosec=0) if zero_stamps else time_cls(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)
            header = header_cls(stamp=stamp, frame_id="camera_color_optical_frame")
            if compressed:
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                msg = types[msgtype](header=header, format="jpeg", data=buf.reshape(-1))
            else:
                bgr = np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                msg = types[msgtype](header=header, height=rgb.shape[0], width=rgb.shape[1], encoding="bgr8",
                                     is_bigendian=0, step=rgb.shape[1] * 3, data=bgr.reshape(-1))
            # Receive times a little after the stamps, as a recorder sees them.
            writer.write(image_conn, ns + 3_000_000, store.serialize_cdr(msg, msgtype))
        for name, texts in (extra_topics or {}).items():
            for j, text in enumerate(texts):
                ns = round((start_s + j * 0.5) * NS_PER_S)
                writer.write(extra[name], ns, store.serialize_cdr(types["std_msgs/msg/String"](data=text),
                                                                  "std_msgs/msg/String"))
    return path
