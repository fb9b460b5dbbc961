"""The bridge's WebSocket side without ROS: bounded hand-over, slow and stalled clients, clients coming and going."""
from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys

from websockets.sync.client import connect

from bridge_helpers import free_port
from lionfs_testing import REPO, VENV_BIN, wait_until

SUBPROTOCOL = "foxglove.sdk.v1"
MESSAGE_DATA = 1
HEADER = 13
TIMEOUT_S = 20.0
STALLED_RCVBUF = 4096


def _server(**overrides):
    from lionfs_ros.bridge.server import BridgeServer

    settings = dict(host="127.0.0.1", port=free_port(), client_backlog=256, queue_size=16, jpeg_quality=80)
    return BridgeServer(**(settings | overrides))


def _subscribe(ws, *topics: str) -> dict[int, str]:
    """Subscribe to the advertised channels named (all if none); subscription id -> topic."""
    while True:
        message = json.loads(ws.recv(timeout=TIMEOUT_S))
        if message["op"] == "advertise":
            break
    wanted = [c for c in message["channels"] if not topics or c["topic"] in topics]
    ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": i, "channelId": c["id"]} for i, c in
                                                             enumerate(wanted)]}))
    return {i: c["topic"] for i, c in enumerate(wanted)}


def _assistant(i: int, text: str = "") -> dict:
    return {"stamp": {"sec": 100 + i, "nsec": 5}, "turn_index": i, "text": text or f"answer {i}", "is_final": True,
            "sequence": 0}


def _received(ws, subscriptions: dict[int, str], topic: str, count: int) -> list[tuple[int, dict]]:
    out = []
    while len(out) < count:
        message = ws.recv(timeout=TIMEOUT_S)
        if isinstance(message, bytes) and message[0] == MESSAGE_DATA:
            sub = int.from_bytes(message[1:5], "little")
            if subscriptions.get(sub) == topic:
                out.append((int.from_bytes(message[5:13], "little"), json.loads(message[HEADER:])))
    return out


def test_full_hand_over_drops_the_oldest_and_counts_them():
    from lionfs_ros.bridge.messages import ASSISTANT_TOPIC

    queue_size, extra = 16, 5
    server = _server(queue_size=queue_size)  # the sender is not started yet: everything waits in the queue
    try:
        with connect(f"ws://127.0.0.1:{server.port}", subprotocols=[SUBPROTOCOL]) as ws:
            subscriptions = _subscribe(ws, ASSISTANT_TOPIC)
            assert wait_until(lambda: server.stats()["clients"] == 1, TIMEOUT_S)
            for i in range(queue_size + extra):
                server.publish(ASSISTANT_TOPIC, _assistant(i), (100 + i) * 10**9 + 5)
            assert server.stats()["queue_dropped"] == extra and server.stats()["queue_depth"] == queue_size
            server.start()
            got = _received(ws, subscriptions, ASSISTANT_TOPIC, queue_size)
        assert [m["turn_index"] for _, m in got] == list(range(extra, queue_size + extra)), "oldest dropped, order kept"
        assert [t for t, _ in got] == [(100 + i) * 10**9 + 5 for i in range(extra, queue_size + extra)], \
            "the log time is the source stamp"
    finally:
        server.stop()


def test_stalled_client_loses_its_oldest_messages_and_no_one_else_waits():
    from lionfs_ros.bridge.messages import ASSISTANT_TOPIC

    messages, text = 200, "x" * 65536  # 13 MB: more than the socket buffers between server and stalled client hold
    server = _server(client_backlog=32, queue_size=messages).start()
    url = f"ws://127.0.0.1:{server.port}"
    stalled_socket = socket.socket()
    stalled_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    stalled_socket.connect(("127.0.0.1", server.port))
    try:
        with connect(url, subprotocols=[SUBPROTOCOL], max_size=None) as healthy, \
                connect(url, sock=stalled_socket, subprotocols=[SUBPROTOCOL], max_size=None, max_queue=1,
                        close_timeout=1) as stalled:
            subscriptions = _subscribe(healthy, ASSISTANT_TOPIC)
            stalled_subscriptions = _subscribe(stalled, ASSISTANT_TOPIC)  # ...and reads nothing until the end
            assert wait_until(lambda: server.stats()["clients"] == 2, TIMEOUT_S)
            for i in range(messages):
                server.publish(ASSISTANT_TOPIC, _assistant(i, text), i)
            last = -1
            while last < messages - 1:  # the healthy client gets the newest message, in order
                (_, message), = _received(healthy, subscriptions, ASSISTANT_TOPIC, 1)
                assert message["turn_index"] > last
                last = message["turn_index"]
            assert wait_until(lambda: server.stats()["client_overflow_reports"] >= 1, TIMEOUT_S), server.stats()
            assert server.stats()["clients"] == 2, "the stalled client is still connected"
            assert server.stats()["messages_sent"] == messages and server.stats()["queue_dropped"] == 0
            stalled_got = [-1]
            while stalled_got[-1] < messages - 1:  # it wakes up: the newest is there, older ones are gone
                (_, message), = _received(stalled, stalled_subscriptions, ASSISTANT_TOPIC, 1)
                stalled_got.append(message["turn_index"])
            assert stalled_got == sorted(stalled_got) and len(stalled_got) - 1 < messages, stalled_got
    finally:
        server.stop()


def test_clients_come_and_go():
    server = _server().start()
    url = f"ws://127.0.0.1:{server.port}"
    try:
        with contextlib.ExitStack() as first, contextlib.ExitStack() as second:
            clients = [first.enter_context(connect(url, subprotocols=[SUBPROTOCOL])) for _ in range(3)]
            clients += [second.enter_context(connect(url, subprotocols=[SUBPROTOCOL])) for _ in range(2)]
            for ws in clients:
                _subscribe(ws)
            assert wait_until(lambda: server.stats()["clients"] == 5, TIMEOUT_S)
            first.close()
            assert wait_until(lambda: server.stats()["clients"] == 2, TIMEOUT_S), server.stats()
            with socket.create_connection(("127.0.0.1", server.port)) as raw:  # not even a handshake, then gone
                raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            _subscribe(second.enter_context(connect(url, subprotocols=[SUBPROTOCOL])))
            assert wait_until(lambda: server.stats()["clients"] == 3, TIMEOUT_S)
        assert wait_until(lambda: server.stats()["clients"] == 0, TIMEOUT_S)
    finally:
        server.stop()


def test_shipped_foxglove_layout_is_the_built_one():
    from lionfs_ros.bridge.layout import foxglove_layout

    assert json.loads((REPO / "config" / "foxglove_layout.json").read_text()) == foxglove_layout()


def test_bridge_on_a_busy_port_exits_2_naming_it(ros_domain):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        exe = VENV_BIN / "lionfs"
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "lionfs_ros.cli"]
        result = subprocess.run(command + ["bridge", "--port", str(port), "--http-port", "0"],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot listen on 127.0.0.1 (WebSocket port {port}, HTTP port 0)" in result.stderr
    assert "Traceback" not in result.stderr


def test_event_and_role_names_match_the_interfaces():
    """The ROS-free bridge names events and roles itself; the names must be the .msg constants."""
    from lionfs_ros.bridge.messages import EVENT_NAMES, ROLE_NAMES
    from lionfs_ros.msg import AssistantMessage
    from lionfs_ros.nodes.listener import EVENT_NAMES as MSG_EVENT_NAMES

    assert EVENT_NAMES == MSG_EVENT_NAMES
    roles = {value: name.removeprefix("ROLE_").lower() for name, value in vars(AssistantMessage).items()
             if name.startswith("ROLE_")}
    assert ROLE_NAMES == roles
