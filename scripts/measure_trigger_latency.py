"""Image stamp -> RESPONSE_TRIGGERED latency across processes, and how much of it is transport.

Starts lionfs_node as its own process (threshold 1.0, so every decided frame triggers unless the
slow thinker is busy), publishes frames from this process at a fixed rate, and listens to the
node's guidance events and assistant messages. For each turn:

  end_to_end  = event received here - image stamp            (both on this host's clock)
  in_node     = AssistantMessage.decision_latency             (frame arrival at the node -> decision)
  transport   = end_to_end - in_node                          (image in + event out, DDS + (de)serialization + callbacks)

Prints one JSON object. ROS traffic stays on this host (LOCALHOST discovery, own domain).

    .venv/bin/python scripts/measure_trigger_latency.py [--model DIR] [--frames N] [--size S] [--rate HZ]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", "77")

REPO = Path(__file__).resolve().parents[1]
NS_PER_S = 1e9


def percentiles(values) -> dict:
    if not values:
        return {"n": 0}
    ms = np.asarray(values) * 1e3
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "mean_ms": round(float(ms.mean()), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="", help="model directory (default: the bundled demo model)")
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--size", type=int, default=128, help="square frame side in pixels")
    parser.add_argument("--rate", type=float, default=8.0, help="camera rate in Hz")
    parser.add_argument("--node-arg", action="append", default=[], help="extra -p name:=value for lionfs_node")
    args = parser.parse_args()

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from lionfs_ros.msg import AssistantMessage, GuidanceEvent

    node_args = ["-p", "threshold:=1.0", "-p", f"model_path:={args.model}"]
    for extra in args.node_arg:
        node_args += ["-p", extra]
    node_proc = subprocess.Popen([str(Path(sys.executable).with_name("lionfs_node")), "--ros-args", *node_args],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    node = rclpy.create_node("latency_probe")
    camera = node.create_publisher(Image, "image_raw", qos_profile_sensor_data)
    triggers, decisions = {}, {}

    def on_event(msg):
        if msg.event_type == GuidanceEvent.RESPONSE_TRIGGERED:
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec / NS_PER_S
            triggers[msg.turn_index] = time.time() - stamp

    def on_message(msg):
        latency = msg.decision_latency
        decisions.setdefault(msg.turn_index, latency.sec + latency.nanosec / NS_PER_S)

    node.create_subscription(GuidanceEvent, "guidance", on_event, 100)
    node.create_subscription(AssistantMessage, "assistant", on_message, 100)
    try:
        deadline = time.monotonic() + 120
        while camera.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        rng = np.random.default_rng(0)
        period, start = 1.0 / args.rate, time.monotonic()
        for i in range(args.frames):
            rgb = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
            msg = Image(height=args.size, width=args.size, encoding="rgb8", step=args.size * 3, data=rgb.tobytes())
            msg.header.stamp = node.get_clock().now().to_msg()
            camera.publish(msg)
            while time.monotonic() < start + (i + 1) * period:
                rclpy.spin_once(node, timeout_sec=0.005)
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node_proc.send_signal(signal.SIGINT)
        node_proc.wait(timeout=30)
        node.destroy_node()
        rclpy.try_shutdown()
    turns = sorted(set(triggers) & set(decisions))
    end_to_end = [triggers[t] for t in turns]
    in_node = [decisions[t] for t in turns]
    transport = [e - d for e, d in zip(end_to_end, in_node)]
    report = {
        "what": "image stamp -> RESPONSE_TRIGGERED GuidanceEvent, lionfs_node in its own process",
        "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "model": args.model or "bundled demo model", "frame": f"{args.size}x{args.size} rgb8",
        "rate_hz": args.rate, "frames": args.frames, "triggers": len(triggers),
        "end_to_end": percentiles(end_to_end), "in_node_decision": percentiles(in_node),
        "transport_and_callbacks": percentiles(transport),
        "transport_share_of_p50": round(float(np.median(transport) / np.median(end_to_end)), 3) if turns else None,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
