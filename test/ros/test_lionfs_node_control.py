"""Driving lionfs_node: lifecycle transitions, parameters at run time, the edge/server split."""
import os
import signal

import pytest

from lionfs_testing import TINY_NODE_PARAMS, build_tiny_model, node_command, wait_until
from test_lionfs_node import ALWAYS, Graph, start_node


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("control_model")))


def call(node, srv_type, name, request, timeout=30):
    client = node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=timeout), f"no service {name}"
    future = client.call_async(request)
    assert wait_until(future.done, timeout=timeout), f"{name} did not answer"
    return future.result()


def transition(graph, transition_id):
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request()
    request.transition.id = transition_id
    return call(graph.node, ChangeState, "/lionfs_node/change_state", request).success


def state(graph) -> str:
    from lifecycle_msgs.srv import GetState

    return call(graph.node, GetState, "/lionfs_node/get_state", GetState.Request()).current_state.label


def test_lifecycle_configure_activate_deactivate_cleanup(processes, rclpy_context, tiny_model):
    from lifecycle_msgs.msg import Transition

    node = start_node(processes, tiny_model, *ALWAYS, "-p", "autostart:=false")
    graph = Graph(rclpy_context)
    assert state(graph) == "unconfigured"
    assert graph.camera.get_subscription_count() == 0
    assert transition(graph, Transition.TRANSITION_CONFIGURE) and state(graph) == "inactive"
    assert graph.camera.get_subscription_count() == 0  # subscribes only when active
    assert transition(graph, Transition.TRANSITION_ACTIVATE) and state(graph) == "active"
    graph.wait_for_node(timeout=10)
    graph.stream(16)
    assert wait_until(lambda: graph.finals(), timeout=20), processes.log(node)
    assert transition(graph, Transition.TRANSITION_DEACTIVATE) and state(graph) == "inactive"
    assert wait_until(lambda: graph.camera.get_subscription_count() == 0, timeout=10)
    said = len(graph.messages)
    graph.stream(8)
    assert len(graph.messages) == said  # inactive: nothing is decided or published
    assert transition(graph, Transition.TRANSITION_ACTIVATE) and state(graph) == "active"
    graph.wait_for_node(timeout=10)
    graph.stream(16)
    assert wait_until(lambda: len(graph.messages) > said, timeout=20)
    assert transition(graph, Transition.TRANSITION_DEACTIVATE)
    assert transition(graph, Transition.TRANSITION_CLEANUP) and state(graph) == "unconfigured"
    assert node.poll() is None


def test_threshold_and_policy_change_at_run_time(processes, rclpy_context, tiny_model):
    from lionfs_ros.msg import GuidanceEvent
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    node = start_node(processes, tiny_model, "-p", "threshold:=0.0", "-p", "reliability:=reliable")
    graph = Graph(rclpy_context, "RELIABLE")
    graph.wait_for_node()

    def set_param(name, value):
        kind = ParameterType.PARAMETER_DOUBLE if isinstance(value, float) else ParameterType.PARAMETER_STRING
        field = "double_value" if isinstance(value, float) else "string_value"
        param = Parameter(name=name, value=ParameterValue(type=kind, **{field: value}))
        return call(graph.node, SetParameters, "/lionfs_node/set_parameters",
                    SetParameters.Request(parameters=[param])).results[0]

    graph.stream(16)
    quiet = len(graph.events_of(GuidanceEvent.RESPONSE_TRIGGERED))
    assert set_param("threshold", 1.0).successful
    assert set_param("trigger_policy", "queue").successful
    graph.stream(32)  # 4 s at 8 Hz: 8 general-rate decisions, each one wanting to speak now
    assert wait_until(lambda: graph.stat("threshold") == "1" and graph.stat("trigger_policy") == "queue", timeout=5)
    # A loaded 2-core CI machine drops a frame or two from the node's queue; the events also trail the frames.
    talked = wait_until(lambda: len(graph.events_of(GuidanceEvent.RESPONSE_TRIGGERED)) - quiet >= 4, timeout=10)
    assert talked and quiet < 4
    refused = set_param("threshold", 2.0)
    assert not refused.successful and "threshold must be <= 1.0" in refused.reason
    assert not set_param("model_path", "/elsewhere").successful
    assert node.poll() is None


def test_split_mode_survives_the_slow_thinker_dying_and_recovers(processes, rclpy_context, tiny_model):
    from lionfs_ros.msg import GuidanceEvent

    server_args = ["-p", f"model_path:={tiny_model}"]
    server = processes.start(node_command("slow_thinker_node", *server_args), "slow_thinker")
    edge = start_node(processes, tiny_model, *ALWAYS, "-p", "slow_thinker:=remote", "-p", "remote_timeout:=5.0")
    graph = Graph(rclpy_context)
    graph.wait_for_node()
    graph.stream(16)
    assert wait_until(lambda: graph.finals(), timeout=30), processes.log(edge) + processes.log(server)
    assert "turn 0:" in processes.log(server)

    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    decided = int(graph.stat("decided"))
    graph.stream(24)
    assert wait_until(lambda: graph.events_of(GuidanceEvent.DEGRADED_MODE), timeout=15), processes.log(edge)
    assert wait_until(lambda: int(graph.stat("decided")) >= decided + 4, timeout=5)  # the fast path went on
    assert edge.poll() is None

    answered = len(graph.finals())
    processes.start(node_command("slow_thinker_node", *server_args), "slow_thinker_again")
    assert wait_until(lambda: graph.stream(1) or graph.events_of(GuidanceEvent.DEGRADED_RECOVERED), timeout=60)
    # A goal sent while the old server's death is still undetected times out (remote_timeout);
    # keep the camera going until answers flow again.
    assert wait_until(lambda: graph.stream(1) or len(graph.finals()) > answered, timeout=60), processes.log(edge)
    assert edge.poll() is None
