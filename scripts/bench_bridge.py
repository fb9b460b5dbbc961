"""Does the WebSocket bridge change lionfs_node's decision latency? 0 clients vs 5 clients + 1 stalled one.

Each run starts a node set fresh as real processes (`lionfs bringup`'s supervisor, this host only,
a domain of its own), plays the same synthetic episode into it in real time from this process,
and reads lionfs_node's decision latency (frame arrival -> decision, every frame of the run)
from its last /diagnostics status, plus the decision latency of each answer (AssistantMessage).
Conditions, run in turn `--rounds` times:

  no_bridge        the `lionfs` set (lionfs_node alone)
  bridge_0         the `lionfs_ar` set (lionfs_node + bridge), no client
  bridge_5_stalled the `lionfs_ar` set; 5 clients (another process) read every channel, camera
                   included, and a 6th subscribes to everything and never reads

Prints one JSON object (and writes it with --out).

    .venv/bin/python scripts/bench_bridge.py [--actions 8] [--rounds 3] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", "78")

SUBPROTOCOL = "foxglove.sdk.v1"
CLIENTS = 5
STARTUP_TIMEOUT_S = 120.0
END_TIMEOUT_S = 60.0
SETTLE_S = 2.0
STALLED_RCVBUF = 4096
CONDITIONS = ("no_bridge", "bridge_0", "bridge_5_stalled")
# The clients' process is spawned, not forked: this process runs rclpy threads, which a fork would copy mid-flight.
MP = multiprocessing.get_context("spawn")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def _subscribe_all(ws) -> None:
    """Wait for the server's advertisement and subscribe to every channel."""
    while True:
        message = json.loads(ws.recv())
        if message["op"] == "advertise":
            ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                {"id": i, "channelId": c["id"]} for i, c in enumerate(message["channels"])]}))
            return


def _clients(url: str, ready, stop, counts) -> None:
    """Runs in its own process: CLIENTS reading clients and one that never reads after subscribing."""
    from websockets.sync.client import connect

    def reader(index: int) -> None:
        with connect(url, subprotocols=[SUBPROTOCOL], max_size=None) as ws:
            _subscribe_all(ws)
            ready.release()
            while not stop.is_set():
                try:
                    message = ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                counts[index] += isinstance(message, bytes)

    host, port = url.removeprefix("ws://").split(":")
    sock = socket.socket()  # a small receive buffer: the stall reaches the server's outbox within seconds
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.connect((host, int(port)))
    # No keepalive pings: a client that stops reading would otherwise give up on its own after ~40 s.
    stalled = connect(url, sock=sock, subprotocols=[SUBPROTOCOL], max_size=None, max_queue=1, close_timeout=1,
                      ping_interval=None)
    _subscribe_all(stalled)
    ready.release()
    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(timeout=5)
    stalled.close()


def _run(condition: str, episode, log_dir: Path, client_backlog: int) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import MultiThreadedExecutor

    from lionfs_ros.bringup.node_sets import get_node_set
    from lionfs_ros.bringup.supervisor import Supervisor
    from lionfs_ros.msg import GuidanceEvent
    from lionfs_ros.nodes.camera_source import CameraSource
    from lionfs_ros.nodes.listener import Listener

    node_set = get_node_set("lionfs" if condition == "no_bridge" else "lionfs_ar")
    params = yaml.safe_load(node_set.params_file.read_text())
    ws_port = _free_port()
    if "bridge" in params:
        params["/**/bridge"]["ros__parameters"].update(port=ws_port, http_port=0, client_backlog=client_backlog)
    params_file = log_dir / f"{condition}.yaml"
    params_file.write_text(yaml.safe_dump(params))
    supervisor = Supervisor(node_set, params_file, log_dir / condition, out=open(os.devnull, "w"))
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = MultiThreadedExecutor(context=context)
    camera, listener = CameraSource("/camera/image_raw", context=context), Listener(out=open(os.devnull, "w"),
                                                                                   context=context)
    diagnostics: dict[str, dict] = {}
    listener.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: diagnostics.update(
        {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}), 10)
    for node in (camera, listener):
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    clients, stop = None, MP.Event()
    counts = MP.Array("l", CLIENTS)
    try:
        supervisor.start()
        subscribers = 1 if condition == "no_bridge" else 2
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while camera.publisher.get_subscription_count() < subscribers or not listener.wait_for_publishers(0.1):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{condition}: the node set did not come up; logs in {log_dir / condition}")
            time.sleep(0.1)
        if condition == "bridge_5_stalled":
            ready = MP.Semaphore(0)
            clients = MP.Process(target=_clients, args=(f"ws://127.0.0.1:{ws_port}", ready, stop, counts))
            clients.start()
            for _ in range(CLIENTS + 1):
                if not ready.acquire(timeout=STARTUP_TIMEOUT_S):
                    raise RuntimeError("the WebSocket clients did not connect")
        time.sleep(SETTLE_S)
        camera.play(episode.frames())
        deadline = time.monotonic() + END_TIMEOUT_S
        while not listener.events_of(GuidanceEvent.STREAM_STALLED) and time.monotonic() < deadline:
            time.sleep(0.1)
        seen = len(diagnostics)
        time.sleep(2 * SETTLE_S)  # one more /diagnostics period after the end of the stream
        cpu_s = {n.spec.name: _cpu_seconds(n.process.pid) for n in supervisor.nodes}
        node = next(v for k, v in diagnostics.items() if k.startswith("lionfs_node"))
        bridge = next((v for k, v in diagnostics.items() if k.startswith("bridge")), {})
    finally:
        stop.set()
        if clients is not None:
            clients.join(timeout=10)
        supervisor.stop()
        executor.shutdown()
        rclpy.try_shutdown(context=context)
    finals = [m for m in listener.messages if m.is_final]
    answer_ms = [1e3 * (m.decision_latency.sec + m.decision_latency.nanosec * 1e-9) for m in finals]
    return {
        "condition": condition, "frames_published": len(camera.published), "statuses_seen": seen,
        "decided": int(node["decided"]), "frames_dropped": int(node["dropped"]),
        "decision_latency_p50_ms": float(node["latency_p50_ms"]),
        "decision_latency_p99_ms": float(node["latency_p99_ms"]),
        "answers": len(finals), "answer_decision_latency_ms": [round(v, 1) for v in answer_ms],
        "cpu_seconds": cpu_s,
        "client_messages_received": list(counts) if condition == "bridge_5_stalled" else [],
        "bridge": {k: bridge[k] for k in ("clients", "messages_sent", "camera_frames_sent", "queue_dropped",
                                          "camera_frames_replaced", "client_overflow_reports") if k in bridge},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--actions", type=int, default=8, help="actions in the synthetic episode (8: about 36 s)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="times each condition runs, interleaved")
    parser.add_argument("--client-backlog", type=int, default=32,
                        help="the bridge's per-client outbox (default 32, small so the stalled client's overflows "
                        "within a run; the shipped config has 256)")
    parser.add_argument("--machine", default=platform.node(), help="how to name this machine in the JSON")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    from lionfs_ros.commands.demo_episode import demo_episode

    episode = demo_episode(seed=args.seed, actions=args.actions)
    log_dir = Path(tempfile.mkdtemp(prefix="lionfs-bench-bridge-"))
    runs = [_run(condition, episode, log_dir, args.client_backlog)
            for _ in range(args.rounds) for condition in CONDITIONS]
    summary = {}  # the median over rounds: one run hit by another process on a shared machine does not decide it
    for condition in CONDITIONS:
        mine = [r for r in runs if r["condition"] == condition]
        summary[condition] = {key: round(float(np.median([r[key] for r in mine])), 2)
                              for key in ("decision_latency_p50_ms", "decision_latency_p99_ms", "frames_dropped")}
        summary[condition]["cpu_seconds"] = {name: round(float(np.median([r["cpu_seconds"][name] for r in mine])), 2)
                                             for name in mine[0]["cpu_seconds"]}
        summary[condition]["decision_latency_p50_ms_range"] = [min(r["decision_latency_p50_ms"] for r in mine),
                                                               max(r["decision_latency_p50_ms"] for r in mine)]
    result = {
        "benchmark": "bridge clients vs lionfs_node decision latency", "machine": args.machine,
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "episode": {"seed": args.seed, "actions": args.actions, "frames": len(list(episode.frames())),
                    "duration_s": episode.duration},
        "clients": {"reading": CLIENTS, "stalled": 1, "subscribed_to": "every channel, camera included",
                    "bridge_client_backlog": args.client_backlog},
        "summary_median_over_rounds": summary, "runs": runs, "logs": str(log_dir),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
