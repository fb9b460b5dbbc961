"""Driving lionfs_node: lifecycle transitions, parameters at run time, the edge/server split."""
import os
import signal
import time

import pytest

from lionfs_testing import build_tiny_model, node_command, wait_until
from test_lionfs_node import ALWAYS, SIZE, Graph, start_node


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


def test_threshold_and_policy_change_at_run_time(processes, rclpy_context, tiny_model, tmp_path):
    """Parameters as `ros2 param` users expect: ints for floats, ranges, read_only, atomic batches."""
    from lionfs_ros.msg import GuidanceEvent
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters, SetParametersAtomically

    params = tmp_path / "ints.yaml"  # YAML ints where floats are declared, and a -p int for a float
    params.write_text("/**/lionfs_node:\n  ros__parameters:\n    threshold: 0\n    reliability: reliable\n")
    node = start_node(processes, tiny_model, "--params-file", str(params), "-p", "general_fps:=2",
                      "-p", f"camera_width:={SIZE}", "-p", f"camera_height:={SIZE}")
    graph = Graph(rclpy_context, "RELIABLE")
    graph.wait_for_node()

    def value(name, v):
        kind, field = {float: (ParameterType.PARAMETER_DOUBLE, "double_value"),
                       int: (ParameterType.PARAMETER_INTEGER, "integer_value"),
                       str: (ParameterType.PARAMETER_STRING, "string_value")}[type(v)]
        return Parameter(name=name, value=ParameterValue(type=kind, **{field: v}))

    def set_param(name, v):
        return call(graph.node, SetParameters, "/lionfs_node/set_parameters",
                    SetParameters.Request(parameters=[value(name, v)])).results[0]

    def get(name):
        return call(graph.node, GetParameters, "/lionfs_node/get_parameters", GetParameters.Request(names=[name])).values[0]

    graph.stream(16)
    quiet = len(graph.events_of(GuidanceEvent.RESPONSE_TRIGGERED))
    assert set_param("threshold", 1).successful  # `ros2 param set /lionfs_node threshold 1`
    assert get("threshold").double_value == 1.0
    assert set_param("trigger_policy", "queue").successful
    graph.stream(32)  # 4 s at 8 Hz: 8 general-rate decisions, each one wanting to speak now
    assert wait_until(lambda: graph.stat("threshold") == "1" and graph.stat("trigger_policy") == "queue", timeout=5)
    # A loaded 2-core CI machine drops a frame or two from the node's queue; the events also trail the frames.
    talked = wait_until(lambda: len(graph.events_of(GuidanceEvent.RESPONSE_TRIGGERED)) - quiet >= 4, timeout=10)
    assert talked and quiet < 4
    refused = set_param("threshold", 2.0)
    assert not refused.successful and "out of range" in refused.reason
    refused = set_param("model_path", "/elsewhere")
    assert not refused.successful and "read-only" in refused.reason
    # A batch with one bad value changes nothing, not even the good one.
    batch = call(graph.node, SetParametersAtomically, "/lionfs_node/set_parameters_atomically",
                 SetParametersAtomically.Request(parameters=[value("threshold", 0.5), value("trigger_policy", "bogus")]))
    assert not batch.result.successful and "trigger_policy must be one of" in batch.result.reason
    assert get("threshold").double_value == 1.0
    graph.diagnostics.clear()
    assert wait_until(lambda: graph.stat("threshold") == "1" and graph.stat("trigger_policy") == "queue", timeout=5)
    threshold, model_path = call(graph.node, DescribeParameters, "/lionfs_node/describe_parameters",
                                 DescribeParameters.Request(names=["threshold", "model_path"])).descriptors
    assert (threshold.floating_point_range[0].from_value, threshold.floating_point_range[0].to_value) == (-1.0, 1.0)
    assert not threshold.read_only and model_path.read_only and "Model directory" in model_path.description
    width, = call(graph.node, DescribeParameters, "/lionfs_node/describe_parameters",
                  DescribeParameters.Request(names=["camera_width"])).descriptors
    assert width.read_only and (width.integer_range[0].from_value, width.integer_range[0].to_value) == (0, 8192)
    assert f"warmed up for camera {SIZE}x{SIZE}" in processes.log(node)  # the engine was told the camera's size
    assert node.poll() is None


@pytest.mark.parametrize("text, message", [
    ("/**/lionfs_node:\n  ros__parameters:\n    thresold: 0.5\n", "unknown parameter 'thresold' (did you mean 'threshold'?)"),
    ("/**:\n  ros__parameters: [unclosed\n", "not valid YAML"),
    ("/**/lionfs_node:\n  ros__parameters:\n    general_fps: fast\n", "general_fps must be float, got 'fast'"),
])
def test_bad_params_file_stops_the_node_with_one_clear_line(processes, ros_domain, tmp_path, text, message):
    params = tmp_path / "bad.yaml"
    params.write_text(text)
    node = processes.start(node_command("lionfs_node", "--params-file", str(params)), "node")
    assert node.wait(timeout=60) == 2
    log = processes.log(node)
    assert message in log and str(params) in log and "Traceback" not in log, log


def test_split_mode_survives_the_slow_thinker_dying_and_recovers(processes, rclpy_context, tiny_model):
    from lionfs_ros.msg import GuidanceEvent

    server_args = ["-p", f"model_path:={tiny_model}"]
    server = processes.start(node_command("slow_thinker_node", *server_args), "slow_thinker")
    edge = start_node(processes, tiny_model, *ALWAYS, "-p", "slow_thinker:=remote", "-p", "remote_timeout:=5.0")
    graph = Graph(rclpy_context)
    graph.wait_for_node()

    def sees_server():  # the edge's latest report: not degraded (it has the server's heartbeat)
        return graph.diagnostics and not graph.diagnostics[-1].status[0].message.startswith("degraded")
    # A turn triggered before the edge sees the server fails over to degraded mode (by design): on a loaded
    # machine the server can still be loading its model when the first frame triggers.
    assert wait_until(sees_server, timeout=60), processes.log(edge) + processes.log(server)
    graph.stream(16)
    assert wait_until(lambda: graph.finals(), timeout=30), processes.log(edge) + processes.log(server)
    assert wait_until(lambda: "turn 0:" in processes.log(server), timeout=10), processes.log(server)

    triggered_before = {e.turn_index for e in graph.events_of(GuidanceEvent.RESPONSE_TRIGGERED)}
    graph.events.clear()  # only what follows the kill counts
    os.kill(server.pid, signal.SIGKILL)
    killed = time.monotonic()
    server.wait()
    decided = int(graph.stat("decided"))
    # Noticed by the heartbeat, not the ~20 s DDS lease; the camera keeps going meanwhile.
    assert wait_until(lambda: graph.stream(1) or graph.events_of(GuidanceEvent.DEGRADED_MODE), timeout=15), \
        processes.log(edge)
    assert time.monotonic() - killed < 5.0
    # The fast path went on.
    assert wait_until(lambda: graph.stream(1) or int(graph.stat("decided")) >= decided + 4, timeout=10)
    # A question asked while degraded is answered with a final message that says why there is no answer.
    from lionfs_ros.srv import AskQuestion

    asked = call(graph.node, AskQuestion, "/ask", AskQuestion.Request(text="what is on the table?"))
    assert asked.accepted

    def question_final():
        return [m for m in graph.finals() if m.query_id == asked.query_id]
    assert wait_until(lambda: graph.stream(1) or question_final(), timeout=15), processes.log(edge)
    assert question_final()[0].error and question_final()[0].role == question_final()[0].ROLE_QUERY_ANSWER
    # Every triggered turn (the one in flight at the kill included) ended with one final message.
    triggered = triggered_before | {e.turn_index for e in graph.events_of(GuidanceEvent.RESPONSE_TRIGGERED)}
    assert wait_until(lambda: triggered <= {m.turn_index for m in graph.finals()}, timeout=10), \
        (triggered, [(m.turn_index, m.error) for m in graph.finals()])
    failed = [m for m in graph.finals() if m.error]
    assert failed
    assert wait_until(lambda: {e.turn_index for e in graph.events_of(GuidanceEvent.DEGRADED_MODE)}
                      >= {m.turn_index for m in failed}, timeout=10)  # events can trail the final messages
    assert edge.poll() is None

    answered = len(graph.finals())
    again = processes.start(node_command("slow_thinker_node", *server_args), "slow_thinker_again")
    assert wait_until(lambda: graph.stream(1) or graph.events_of(GuidanceEvent.DEGRADED_RECOVERED), timeout=60), \
        processes.log(edge) + processes.log(again)
    # A goal sent while the old server's death is still undetected times out (remote_timeout);
    # keep the camera going until answers flow again.
    assert wait_until(lambda: graph.stream(1) or len(graph.finals()) > answered, timeout=60), processes.log(edge)
    assert edge.poll() is None
