#!/usr/bin/env python3
"""An external 60 Hz VGA camera through `lionfs bringup`, as a robot runs it: are ordered frames
ever refused, and how many frames reach the node?

Three processes: `lionfs bringup` (the `lionfs` node set, bundled model unless --params names
another), a camera (its own rclpy process: 640x480 rgb8, sensor-data QoS = best effort, strictly
increasing stamps, paced at --fps), and this one, which reads the node's /diagnostics and
`guidance` events. The camera gets config/fastdds_shm.xml as the README advises for same-host
drivers (--camera-transport default: Fast DDS's own transports instead).

Prints one JSON object (and writes it with --out): frames published, received by the node,
delivery %, frames refused by reason (an ordered stream should have none), stream stalls/resets,
overload drops and decisions. Not a test: it loads the CPU for the whole run.

    .venv/bin/python scripts/measure_ros_edge_camera.py --minutes 5 --out docs/benchmarks/ros_edge_camera.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 640, 480
DOMAIN_ID = "61"
STARTUP_TIMEOUT_S = 180.0
# After the last frame: time for the node's last /diagnostics (period 1 s) to count everything.
SETTLE_S = 3.0


def camera(args) -> int:
    """The camera process: publish until --seconds are over, print how many frames went out."""
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("vga_camera", namespace=args.namespace)
    publisher = node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
    while publisher.get_subscription_count() == 0:
        time.sleep(0.05)
    time.sleep(1.0)  # let the match settle both ways
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8).tobytes() for _ in range(8)]
    total = int(args.seconds * args.fps)
    started, late = time.monotonic(), 0
    for i in range(total):
        msg = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3, data=frames[i % len(frames)])
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = "camera"
        publisher.publish(msg)
        delay = started + (i + 1) / args.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late += 1
    elapsed = time.monotonic() - started
    print(json.dumps({"published": total, "seconds": elapsed, "rate_hz": total / elapsed, "late_frames": late}),
          flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


class Observer:
    """This process: the node's /diagnostics and guidance events."""

    def __init__(self, namespace: str):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor

        from lionfs_ros.msg import GuidanceEvent

        rclpy.init()
        self.node = rclpy.create_node("edge_observer", namespace=namespace)
        self.lock = threading.Lock()
        self.stats: dict[str, str] = {}
        self.events: dict[str, int] = {}
        self.names = {v: k for k, v in vars(GuidanceEvent).items() if k.isupper() and isinstance(v, int)}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.node.create_subscription(GuidanceEvent, "guidance", self._on_event, 100)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.endswith("assistant"):
                with self.lock:
                    self.stats = {kv.key: kv.value for kv in status.values}
                    level = status.level
                    self.stats["_level"] = str(int.from_bytes(level, "little") if isinstance(level, bytes) else level)
                    self.stats["_message"] = status.message

    def _on_event(self, msg) -> None:
        with self.lock:
            name = self.names.get(msg.event_type, str(msg.event_type))
            self.events[name] = self.events.get(name, 0) + 1

    def snapshot(self):
        with self.lock:
            return dict(self.stats), dict(self.events)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--fps", type=float, default=60.0)
    parser.add_argument("--namespace", default="")
    parser.add_argument("--params", type=Path, help="params file for bringup (default: the set's own)")
    parser.add_argument("--camera-transport", choices=("shm", "default"), default="shm")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--camera", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", DOMAIN_ID)
    if args.camera:
        return camera(args)

    from lionfs_ros.bringup.supervisor import transport_env

    log_dir = Path(tempfile.mkdtemp(prefix="edge-camera-"))
    bringup_cmd = [sys.executable, "-m", "lionfs_ros.cli", "bringup", "--log-dir", str(log_dir)]
    if args.namespace:
        bringup_cmd += ["--namespace", args.namespace]
    if args.params:
        bringup_cmd += ["--params", str(args.params)]
    with open(log_dir / "bringup.log", "wb") as log:
        bringup = subprocess.Popen(bringup_cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    camera_env = transport_env(os.environ, args.camera_transport)[0] if args.camera_transport == "shm" else dict(os.environ)
    observer = Observer(args.namespace)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not observer.snapshot()[0]:  # the node is up when its diagnostics arrive
            if bringup.poll() is not None or time.monotonic() > deadline:
                print((log_dir / "bringup.log").read_text()[-3000:], file=sys.stderr)
                return 1
            time.sleep(0.2)
        before, _ = observer.snapshot()
        seconds = args.minutes * 60.0
        cam = subprocess.run([sys.executable, __file__, "--camera", "--seconds", str(seconds), "--fps", str(args.fps),
                              "--namespace", args.namespace], env=camera_env, capture_output=True, text=True,
                             cwd=REPO, timeout=seconds + 120)
        if cam.returncode != 0:
            print(cam.stderr[-3000:], file=sys.stderr)
            return 1
        published = json.loads(cam.stdout.strip().splitlines()[-1])
        _, events = observer.snapshot()  # while the camera ran (its end is a stall, not counted)
        time.sleep(SETTLE_S)
        stats, _ = observer.snapshot()
    finally:
        bringup.send_signal(signal.SIGINT)
        bringup.wait(timeout=30)

    def count(key, source=stats):
        try:
            return int(float(source.get(key, 0)))
        except ValueError:
            return 0
    received = count("frames_received") - count("frames_received", before)
    refused = {k: count(k) for k in stats if k.startswith("rejected_")}
    result = {
        "what": "external 60 Hz VGA rgb8 best-effort camera (own rclpy process) -> lionfs bringup (lionfs set)",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (CPU-only VM), "
                   f"Python {platform.python_version()}",
        "camera_transport": args.camera_transport, "node_transport": "config/fastdds_shm.xml via lionfs bringup",
        "minutes": args.minutes, "fps": args.fps, "camera": published,
        "frames_received_by_node": received,
        "delivery_pct": round(100.0 * received / published["published"], 2) if published["published"] else None,
        "refused_ordered_frames": count("rejected") + count("frames_rejected"),
        "refused_by_reason": refused,
        "stream_resets": count("stream_resets"), "events_while_the_camera_ran": events,
        "engine": {key: stats.get(key) for key in ("frames_in", "decided", "ego_frames", "skipped", "dropped",
                                                   "latency_p50_ms", "latency_p99_ms", "turns", "answers")},
        "final_diagnostics (after the camera stopped)": {"level": stats.get("_level"), "message": stats.get("_message")},
        "logs": str(log_dir),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
