"""lionfs listen: a banner, partials on one line on a terminal, only whole lines into a pipe, events,
and a hint when nothing publishes."""
import os
import pty
import subprocess
import sys
import threading
import time

from lionfs_testing import REPO, VENV_BIN, wait_until


def lionfs_listen(*args):
    exe = VENV_BIN / "lionfs"
    return ([str(exe)] if exe.exists() else [sys.executable, "-m", "lionfs_ros.cli"]) + ["listen", *args]


class Terminal:
    """`lionfs listen` with its stdout on a pseudo-terminal, as a user runs it."""

    def __init__(self, args):
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdout=slave, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                     cwd=REPO)
        os.close(slave)
        self.master, self.chunks = master, []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            self.chunks.append(data)

    @property
    def text(self):
        return b"".join(self.chunks).decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(2)
        self.proc.wait(timeout=10)


def test_listen_prints_partials_finals_and_events(processes, rclpy_context):
    import rclpy
    from lionfs_ros.msg import AssistantMessage, GuidanceEvent

    piped = processes.start(lionfs_listen("--namespace", "robot1", "--duration", "20"), "listen")
    empty = processes.start(lionfs_listen("--namespace", "nobody", "--duration", "7"), "listen_empty")
    terminal = Terminal(lionfs_listen("--namespace", "robot1", "--duration", "20", "--no-events"))
    try:
        context, executor = rclpy_context
        node = rclpy.create_node("fake_assistant", namespace="robot1", context=context)
        executor.add_node(node)
        assistant = node.create_publisher(AssistantMessage, "assistant", 50)
        guidance = node.create_publisher(GuidanceEvent, "guidance", 50)
        assert wait_until(lambda: assistant.get_subscription_count() == 2 and guidance.get_subscription_count() == 2,
                          timeout=20)
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
        assert wait_until(lambda: "red cup on the box." in processes.log(piped), timeout=10)
        assert wait_until(lambda: "red cup on the box." in terminal.text, timeout=10)
    finally:
        terminal.stop()
    piped.send_signal(2)
    piped.wait(timeout=10)
    out = processes.log(piped)
    assert "lionfs listen: listening on /robot1/assistant and /robot1/guidance" in out
    assert "[3.00] event RESPONSE_TRIGGERED: speaking (score 0.91)\n" in out
    assert "[3.00] narration #0: You put the red cup on the box.\n" in out
    assert "\r" not in out and "You put the ..." not in out  # a pipe gets whole lines only
    assert "\r[3.00] narration #0: You put the ..." in terminal.text  # a terminal sees the answer grow
    assert "\r[3.00] narration #0: You put the red cup on the box." in terminal.text
    assert empty.wait(timeout=20) == 0
    assert "nothing publishes on /nobody/assistant and /nobody/guidance yet" in processes.log(empty)
