"""Our messages, service and action cross process boundaries intact."""
import sys
import textwrap

from lionfs_testing import wait_until

PUBLISHER = textwrap.dedent("""
    import time, rclpy
    from lionfs_ros.msg import AssistantMessage, GuidanceEvent, RegionOfInterest2D
    from lionfs_ros.srv import AskQuestion
    rclpy.init()
    node = rclpy.create_node("interface_peer")
    assistant = node.create_publisher(AssistantMessage, "assistant", 10)
    guidance = node.create_publisher(GuidanceEvent, "guidance", 10)
    def ask(request, response):
        response.accepted = bool(request.text)
        response.query_id = "q-" + request.text[:3]
        response.message = "queued"
        return response
    node.create_service(AskQuestion, "ask", ask)
    msg = AssistantMessage(stream_id="cam0", turn_index=3, role=AssistantMessage.ROLE_QUERY_ANSWER,
                           text="You put the red cup on the blue box.", is_final=True, sequence=4,
                           trigger_score=0.875, query="what did I do?", query_id="q1", num_tokens=11)
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = 12, 500, "camera"
    msg.decision_latency.nanosec = 15_000_000
    event = GuidanceEvent(stream_id="cam0", event_type=GuidanceEvent.RESPONSE_TRIGGERED, turn_index=3,
                          score=0.9, summary="speaking",
                          regions=[RegionOfInterest2D(x_min=0.1, y_min=0.2, x_max=0.5, y_max=0.6, label="hand", score=0.7)])
    while rclpy.ok():
        assistant.publish(msg)
        guidance.publish(event)
        rclpy.spin_once(node, timeout_sec=0.1)
""")


def test_messages_and_service_between_two_processes(processes, rclpy_context):
    import rclpy
    from lionfs_ros.msg import AssistantMessage, GuidanceEvent
    from lionfs_ros.srv import AskQuestion

    context, executor = rclpy_context
    processes.start([sys.executable, "-c", PUBLISHER], "peer")
    node = rclpy.create_node("interface_test", context=context)
    executor.add_node(node)
    got = {"assistant": [], "guidance": []}
    node.create_subscription(AssistantMessage, "assistant", got["assistant"].append, 10)
    node.create_subscription(GuidanceEvent, "guidance", got["guidance"].append, 10)
    assert wait_until(lambda: got["assistant"] and got["guidance"], timeout=20), "no message crossed"

    msg = got["assistant"][0]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (12, 500, "camera")
    assert (msg.stream_id, msg.turn_index, msg.role, msg.is_final, msg.sequence) == ("cam0", 3, 2, True, 4)
    assert msg.text == "You put the red cup on the blue box." and msg.query_id == "q1"
    assert abs(msg.trigger_score - 0.875) < 1e-6 and msg.decision_latency.nanosec == 15_000_000
    event = got["guidance"][0]
    assert event.event_type == GuidanceEvent.RESPONSE_TRIGGERED and event.turn_index == 3
    assert len(event.regions) == 1 and event.regions[0].label == "hand"
    assert abs(event.regions[0].x_max - 0.5) < 1e-6

    client = node.create_client(AskQuestion, "ask")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(AskQuestion.Request(text="what is on the jar?"))
    assert wait_until(future.done, timeout=10)
    response = future.result()
    assert response.accepted and response.query_id == "q-wha" and response.message == "queued"
