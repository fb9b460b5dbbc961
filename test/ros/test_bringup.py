"""lionfs bringup starts, supervises and stops the node set; launch files start the same set."""
import importlib.util
import re
import signal
import sys
import time
import types

from lionfs_testing import REPO, VENV_BIN, wait_until

from lionfs_ros.bringup.node_sets import get_node_set
from lionfs_ros.bringup.supervisor import node_command


def lionfs(*args):
    exe = VENV_BIN / "lionfs"
    return ([str(exe)] if exe.exists() else [sys.executable, "-m", "lionfs_ros.cli"]) + list(args)


def camera_subscribers(rclpy_context):
    import rclpy

    context, executor = rclpy_context
    node = rclpy.create_node("bringup_probe", context=context)
    executor.add_node(node)
    return lambda: node.count_subscribers("/camera/image_raw")


def test_bringup_starts_the_set_and_stops_cleanly_on_sigint(processes, rclpy_context, tmp_path):
    bringup = processes.start(lionfs("bringup", "--set", "monitor", "--params", "config/stream_monitor.yaml",
                                     "--log-dir", str(tmp_path / "logs")), "bringup")
    assert wait_until(camera_subscribers(rclpy_context), timeout=30), processes.log(bringup)
    bringup.send_signal(signal.SIGINT)
    assert bringup.wait(timeout=20) == 0, processes.log(bringup)
    out = processes.log(bringup)
    assert f"log: {tmp_path / 'logs' / 'stream_monitor.log'}" in out
    assert "--params-file" in out and "stopped stream_monitor (exit 0)" in out
    assert "watching /camera/image_raw" in (tmp_path / "logs" / "stream_monitor.log").read_text()


def test_bringup_exits_nonzero_when_a_node_dies(processes, rclpy_context, tmp_path):
    import os

    bringup = processes.start(lionfs("bringup", "--set", "monitor", "--log-dir", str(tmp_path / "logs")), "bringup")
    assert wait_until(camera_subscribers(rclpy_context), timeout=30), processes.log(bringup)
    pid = int(re.search(r"started stream_monitor \(pid (\d+)\)", processes.log(bringup)).group(1))
    os.kill(pid, signal.SIGKILL)
    assert bringup.wait(timeout=20) == 1
    assert "node stream_monitor exited on its own with code -9" in processes.log(bringup)


def test_malformed_params_file_names_file_and_key(processes, ros_domain, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    qos_depht: 3\n")
    bringup = processes.start(lionfs("bringup", "--set", "monitor", "--params", str(bad)), "bringup")
    assert bringup.wait(timeout=30) == 2
    out = processes.log(bringup)
    assert f"{bad}: /**.ros__parameters.qos_depht: unknown parameter 'qos_depht' (did you mean 'qos_depth'?)" in out
    assert "started" not in out


def test_launch_file_starts_the_same_nodes_as_bringup(monkeypatch):
    """launch/launch_ros are not installable here: stand-ins record what the launch file asks for."""
    recorded = []

    class Node:
        def __init__(self, **kwargs):
            recorded.append(kwargs)

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    modules = {
        "launch": types.SimpleNamespace(LaunchDescription=list),
        "launch.actions": types.SimpleNamespace(
            DeclareLaunchArgument=lambda name, **kw: ("arg", name, kw["default_value"]),
            OpaqueFunction=lambda function: ("opaque", function),
            Shutdown=lambda reason: ("shutdown", reason)),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=LaunchConfiguration),
        "launch_ros.actions": types.SimpleNamespace(Node=Node),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("lionfs_launch", REPO / "launch" / "lionfs.launch.py")
    launch_file = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch_file)
    description = launch_file.generate_launch_description()
    defaults = {item[1]: item[2] for item in description if item[0] == "arg"}
    opaque = next(item[1] for item in description if item[0] == "opaque")
    for set_name in (defaults["node_set"], "lionfs_split"):
        recorded.clear()
        opaque({**defaults, "node_set": set_name})
        node_set = get_node_set(set_name)
        assert [(n["executable"], n["name"]) for n in recorded] == [(s.executable, s.name) for s in node_set.nodes]
        for launched, spec in zip(recorded, node_set.nodes):
            assert (launched["on_exit"] is not None) == spec.essential  # launch shuts down on essential exits only
            assert launched["parameters"] == [str(node_set.params_file)]
            assert dict(launched["remappings"]) == spec.remappings
            command = node_command(spec, node_set.params_file)
            assert "--params-file" in command and str(node_set.params_file) in command
    assert [spec.essential for spec in get_node_set("lionfs_split").nodes] == [False, True]


def test_split_set_starts_and_degrades_when_the_server_dies(processes, rclpy_context, tmp_path):
    """The shipped edge/server set comes up; the server is not essential: killing it leaves the edge
    running and reporting DEGRADED_MODE (heartbeat, within seconds), and bringup still stops cleanly."""
    import os

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from lionfs_ros.msg import GuidanceEvent

    context, executor = rclpy_context
    probe = rclpy.create_node("split_probe", context=context)
    executor.add_node(probe)
    events, diagnostics = [], []
    probe.create_subscription(GuidanceEvent, "/guidance", events.append, 50)
    probe.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 50)

    def edge_sees_the_server() -> bool:  # the edge's last status is not "degraded: remote slow thinker unavailable"
        mine = [s for array in diagnostics for s in array.status if s.name.startswith("lionfs_node")]
        return bool(mine) and not mine[-1].message.startswith("degraded")
    bringup = processes.start(lionfs("bringup", "--node-set", "lionfs_split", "--log-dir", str(tmp_path)), "bringup")
    assert wait_until(lambda: probe.count_subscribers("/camera/image_raw"), timeout=90), processes.log(bringup)
    assert wait_until(lambda: "serving /slow_think" in (tmp_path / "slow_thinker_node.log").read_text(), timeout=60)
    assert wait_until(lambda: probe.count_publishers("/guidance"), timeout=30)
    out = processes.log(bringup)
    assert "[lionfs_node] " in out and "[slow_thinker_node] " in out and "fastdds_shm.xml" in out  # like ros2 launch
    pid = int(re.search(r"started slow_thinker_node \(pid (\d+)\)", out).group(1))
    # The edge may have reported the server missing while it was still loading: kill it only once the edge has
    # seen it up (else the kill changes nothing the edge reports, and no DEGRADED_MODE comes).
    assert wait_until(edge_sees_the_server, timeout=30), processes.log(bringup)
    events.clear()
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    assert wait_until(lambda: [e for e in events if e.event_type == GuidanceEvent.DEGRADED_MODE], timeout=15), \
        processes.log(bringup)
    assert time.monotonic() - killed < 5.0
    assert bringup.poll() is None and "it is not essential: the others carry on" in processes.log(bringup)
    bringup.send_signal(signal.SIGINT)
    assert bringup.wait(timeout=30) == 0, processes.log(bringup)
    assert "slow thinker remote (/slow_think)" in (tmp_path / "lionfs_node.log").read_text()
