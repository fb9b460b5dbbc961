"""lionfs listen shows partials on one line, finals on their own line, and events."""
import sys
import time

from lionfs_testing import VENV_BIN, wait_until


def test_listen_prints_partials_finals_and_events(processes, rclpy_context):
    import rclpy
    from lionfs_ros.msg import AssistantMessage, GuidanceEvent

    exe = VENV_BIN / "lionfs"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "lionfs_ros.cli"]
    listen = processes.start(command + ["listen", "--namespace", "robot1", "--duration", "20"], "listen")
    context, executor = rclpy_context
    node = rclpy.create_node("fake_assistant", namespace="robot1", context=context)
    executor.add_node(node)
    assistant = node.create_publisher(AssistantMessage, "assistant", 50)
    guidance = node.create_publisher(GuidanceEvent, "guidance", 50)
    assert wait_until(lambda: assistant.get_subscription_count() and guidance.get_subscription_count(), timeout=20)
    time.sleep(0.5)
    event = GuidanceEvent(event_type=GuidanceEvent.RESPONSE_TRIGGERED, summary="speaking (score 0.91)")
    event.header.stamp.sec = 3
    guidance.publish(event)
    for i, text in enumerate(["You", "You put the", "You put the red cup on the box."]):
        msg = AssistantMessage(turn_index=0, role=AssistantMessage.ROLE_NARRATION, text=text, sequence=i,
                               is_final=i == 2)
        msg.header.stamp.sec = 3
        assistant.publish(msg)
        time.sleep(0.1)
    assert wait_until(lambda: "red cup on the box." in processes.log(listen), timeout=10)
    listen.send_signal(2)
    listen.wait(timeout=10)
    out = processes.log(listen)
    assert "[3.00] event RESPONSE_TRIGGERED: speaking (score 0.91)\n" in out
    assert "\r[3.00] narration #0: You put the ..." in out
    assert "\r[3.00] narration #0: You put the red cup on the box.\n" in out
