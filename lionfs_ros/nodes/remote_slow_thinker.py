"""The slow thinker on another process or machine, reached through the slow_think action.

Implements the engine's SlowThinker interface, so the engine neither knows nor cares that the
answer is written elsewhere. The engine calls `generate` from its own slow-path thread; the
node's multi-threaded executor delivers the action's responses meanwhile.

The server is alive while its heartbeat (`<action>/heartbeat`, every HEARTBEAT_PERIOD_S) keeps
coming: a killed server is noticed within HEARTBEAT_TIMEOUT_S, where DDS discovery alone takes
its participant lease (~20 s) to forget it.
"""
from __future__ import annotations

import threading
import time

from rclpy.action import ActionClient
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from lionfs_ros.action import SlowThink
from lionfs_ros.engine import SlowThinker, SlowThinkResult
from lionfs_ros.image_codec import encode_raw

# How often a pending call re-checks that the server is still there.
LIVENESS_PERIOD_S = 0.2
# A server that just appeared gets this long before the first goal: the client can see the
# server's endpoints before the server has matched the client's, and a goal sent in that window
# gets no reply (it would cost a whole remote_timeout).
SETTLE_S = 1.0
NS_PER_S = 1_000_000_000
HEARTBEAT_SUFFIX = "/heartbeat"
HEARTBEAT_PERIOD_S = 0.25
# Missing beats for this long means the server is gone (a loaded 2-core machine can delay a few).
HEARTBEAT_TIMEOUT_S = 2.0
HEARTBEAT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)


def heartbeat_topic(action_name: str) -> str:
    return action_name.rstrip("/") + HEARTBEAT_SUFFIX


class SlowThinkerUnavailable(RuntimeError):
    """The remote slow thinker is absent, refused the goal, died or timed out."""


class RemoteSlowThinker(SlowThinker):
    def __init__(self, node, action_name: str, timeout: float, callback_group):
        self.node, self.timeout = node, timeout
        self.client = ActionClient(node, SlowThink, action_name, callback_group=callback_group)
        self.action_name = node.resolve_topic_name(action_name)
        self._last_beat: float | None = None
        node.create_subscription(Header, heartbeat_topic(action_name), self._on_heartbeat, HEARTBEAT_QOS,
                                 callback_group=callback_group)
        self.available: bool | None = None  # unknown until the first poll
        self.last_error = "not contacted yet"
        self._ready_since: float | None = None

    def _on_heartbeat(self, _msg) -> None:
        self._last_beat = time.monotonic()

    def alive(self) -> bool:
        """The action server is discovered and its heartbeat is fresh."""
        beat = self._last_beat
        fresh = beat is not None and time.monotonic() - beat < HEARTBEAT_TIMEOUT_S
        return fresh and self.client.server_is_ready()

    def poll_availability(self) -> bool | None:
        """True/False when availability changed since the last poll, None when it did not.

        A server found on the first poll is normal operation, not a recovery: no event.
        """
        ready = self.alive()
        if not ready:
            self._ready_since = None
        elif self._ready_since is None:
            self._ready_since = time.monotonic()
        if self.available is None and ready:
            self.available = True
            return None
        if ready == self.available:
            return None
        self.available = ready
        self.last_error = "" if ready else f"no slow_think server (or no heartbeat) on {self.action_name}"
        return ready

    def mark_failed(self, reason: str) -> None:
        """A call failed: report degraded now rather than at the next availability poll."""
        self.last_error = reason
        self.available = False

    def status_text(self) -> str:
        if self.available:
            return f"remote slow thinker back on {self.action_name}"
        return f"remote slow thinker unavailable ({self.last_error}); the fast path keeps running"

    def generate(self, request, on_text) -> SlowThinkResult:
        if not self.alive():
            raise SlowThinkerUnavailable(f"no slow_think server (or no heartbeat) on {self.action_name}")
        if self._ready_since is not None:
            time.sleep(max(0.0, self._ready_since + SETTLE_S - time.monotonic()))
        goal = SlowThink.Goal(
            turn_index=int(request.turn_index),
            keyframes=[_image(rgb, t) for rgb, t in request.keyframes],
            context_roles=[role for role, _ in request.context], context_texts=[text for _, text in request.context],
            query=request.query or "", max_new_tokens=int(request.max_new_tokens))
        started = time.monotonic()
        partial = {"text": "", "tokens": 0}

        def on_feedback(feedback_msg) -> None:
            partial.update(text=feedback_msg.feedback.partial_text, tokens=feedback_msg.feedback.num_tokens)
            on_text(partial["text"], partial["tokens"])

        goal_handle = self._wait(self.client.send_goal_async(goal, feedback_callback=on_feedback), started,
                                 request.cancel)
        if goal_handle is None:
            return _cancelled(partial)
        if not goal_handle.accepted:
            raise SlowThinkerUnavailable(f"{self.action_name} refused the goal")
        try:
            response = self._wait(goal_handle.get_result_async(), started, request.cancel)
        except SlowThinkerUnavailable:
            goal_handle.cancel_goal_async()
            raise
        if response is None:
            goal_handle.cancel_goal_async()
            return _cancelled(partial)
        result = response.result
        # ``available`` changes only in poll_availability (and mark_failed): a call that succeeds first must not
        # take the server's return silently, or no DEGRADED_RECOVERED is ever published for it.
        return SlowThinkResult(text=result.text, num_tokens=result.num_tokens, truncated=result.truncated,
                               time_to_first_token=result.time_to_first_token,
                               tokens_per_second=result.tokens_per_second)

    def _wait(self, future, started: float, cancel: threading.Event):
        """The future's result; None if the engine cancelled the request meanwhile."""
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        while not done.wait(LIVENESS_PERIOD_S):
            if cancel.is_set():
                return None
            if time.monotonic() - started > self.timeout:
                self.last_error = f"no answer within {self.timeout:.1f} s"
                raise SlowThinkerUnavailable(self.last_error)
            if not self.alive():
                self.last_error = "the server went away during the call (no heartbeat)"
                raise SlowThinkerUnavailable(self.last_error)
        return future.result()


def _cancelled(partial: dict) -> SlowThinkResult:
    return SlowThinkResult(text=partial["text"], num_tokens=partial["tokens"], truncated=False,
                           time_to_first_token=0.0, tokens_per_second=0.0, cancelled=True)


def _image(rgb, t: float) -> Image:
    height, width, step, data = encode_raw(rgb, "rgb8")
    msg = Image(height=height, width=width, step=step, data=data, encoding="rgb8")
    nanoseconds = int(round(t * NS_PER_S))
    msg.header.stamp.sec, msg.header.stamp.nanosec = nanoseconds // NS_PER_S, nanoseconds % NS_PER_S
    return msg
