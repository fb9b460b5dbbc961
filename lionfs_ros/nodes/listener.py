"""What an AR app sees: assistant messages and guidance events, printed for humans.

On a terminal, partial answers rewrite one line in place; finals and events get their own
lines. Into a pipe or file only whole lines go (finals and events, no carriage returns). Every
received message is also kept so the demo and tests can score them.
"""
from __future__ import annotations

import sys
import threading
import time

from rclpy.node import Node

from lionfs_ros.msg import AssistantMessage, GuidanceEvent
from lionfs_ros.nodes.camera_input import stamp_seconds

EVENT_NAMES = {
    value: name for name, value in vars(GuidanceEvent).items()
    if name.isupper() and isinstance(value, int)
}
ROLE_NAMES = {AssistantMessage.ROLE_ASSISTANT: "assistant", AssistantMessage.ROLE_NARRATION: "narration",
              AssistantMessage.ROLE_QUERY_ANSWER: "answer"}
ASSISTANT_TOPIC = "assistant"
GUIDANCE_TOPIC = "guidance"
RELIABLE_DEPTH = 50


class Listener(Node):
    def __init__(self, out=sys.stdout, show_events: bool = True, partials: bool | None = None, **kwargs):
        super().__init__("lionfs_listener", **kwargs)
        self.out, self.show_events = out, show_events
        self.partials = _is_terminal(out) if partials is None else partials
        self.lock = threading.Lock()
        self.messages: list[AssistantMessage] = []
        self.events: list[GuidanceEvent] = []
        self._partial_open = False
        self.create_subscription(AssistantMessage, ASSISTANT_TOPIC, self._on_message, RELIABLE_DEPTH)
        self.create_subscription(GuidanceEvent, GUIDANCE_TOPIC, self._on_event, RELIABLE_DEPTH)

    def _on_message(self, msg: AssistantMessage) -> None:
        with self.lock:
            self.messages.append(msg)
        t = stamp_seconds(msg.header.stamp)
        role = ROLE_NAMES.get(msg.role, "assistant")
        line = f"[{t:.2f}] {role} #{msg.turn_index}: {msg.text}"
        if msg.is_final:
            self._write("\r" + line + "\n" if self._partial_open else line + "\n")
            self._partial_open = False
        elif self.partials:
            self._write("\r" + line + " ...")
            self._partial_open = True

    def _on_event(self, msg: GuidanceEvent) -> None:
        with self.lock:
            self.events.append(msg)
        if self.show_events:
            name = EVENT_NAMES.get(msg.event_type, str(msg.event_type))
            prefix = "\n" if self._partial_open else ""
            self._partial_open = False
            self._write(f"{prefix}[{stamp_seconds(msg.header.stamp):.2f}] event {name}: {msg.summary}\n")

    def wait_for_publishers(self, timeout: float) -> bool:
        """True once the assistant's topics have publishers (the node set is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count_publishers(self._resolved(ASSISTANT_TOPIC)) and self.count_publishers(self._resolved(GUIDANCE_TOPIC)):
                return True
            time.sleep(0.05)
        return False

    def has_publishers(self) -> bool:
        return bool(self.count_publishers(self._resolved(ASSISTANT_TOPIC)) or
                    self.count_publishers(self._resolved(GUIDANCE_TOPIC)))

    def topics(self) -> str:
        return f"{self._resolved(ASSISTANT_TOPIC)} and {self._resolved(GUIDANCE_TOPIC)}"

    def _resolved(self, topic: str) -> str:
        return self.resolve_topic_name(topic)

    def events_of(self, event_type: int) -> list[GuidanceEvent]:
        with self.lock:
            return [e for e in self.events if e.event_type == event_type]

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def _is_terminal(out) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
