"""slow_thinker_node: serves the slow_think action for lionfs_node's running with `slow_thinker: remote`.

It rebuilds the context from the goal's portable fields (keyframes + dialogue) and streams the
answer back as feedback. One goal at a time: a GPU writes one answer at a time anyway, and a
second goal waits rather than slowing the first. A heartbeat on `<action>/heartbeat` tells
clients it is alive (they give up on it within seconds of a crash, not at the DDS lease).
"""
from __future__ import annotations

import threading
import time

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Header

from lionfs_ros.action import SlowThink
from lionfs_ros.config import SlowThinkerNodeParams
from lionfs_ros.image_codec import ImageDecodeError
from lionfs_ros.nodes.camera_input import decode_image_msg, stamp_seconds
from lionfs_ros.nodes.params import declare_params
from lionfs_ros.nodes.remote_slow_thinker import HEARTBEAT_PERIOD_S, HEARTBEAT_QOS, heartbeat_topic


class SlowThinkerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("slow_thinker_node", **kwargs)
        from lionfs_ros.engine import EngineConfig, LocalSlowThinker, SlowThinkRequest
        from lionfs_ros.model_loading import load_for_inference

        self.params: SlowThinkerNodeParams = declare_params(self, SlowThinkerNodeParams)
        model, path, device = load_for_inference(self.params.model_path, self.params.device, self.params.dtype)
        self.thinker = LocalSlowThinker(model, EngineConfig(slow_path=self.params.slow_path,
                                                           max_new_tokens=self.params.max_new_tokens or None))
        self._request_type = SlowThinkRequest
        self._one_at_a_time = threading.Lock()
        self.server = ActionServer(
            self, SlowThink, self.params.slow_think_action, execute_callback=self._execute,
            goal_callback=self._accept, cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup())
        self.heartbeat = self.create_publisher(Header, heartbeat_topic(self.params.slow_think_action), HEARTBEAT_QOS)
        # Its own group: beats go on while a goal is being written.
        self.create_timer(HEARTBEAT_PERIOD_S, self._beat, callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"serving {self.resolve_topic_name(self.params.slow_think_action)} "
                               f"with model {path} on {device}")

    def _beat(self) -> None:
        self.heartbeat.publish(Header(stamp=self.get_clock().now().to_msg(), frame_id=self.get_name()))

    def _accept(self, goal) -> GoalResponse:
        if not goal.keyframes and not goal.query:
            self.get_logger().warning("refused a goal with neither keyframes nor a query")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle):
        goal = goal_handle.request
        try:
            keyframes = [(decode_image_msg(image), stamp_seconds(image.header.stamp)) for image in goal.keyframes]
        except ImageDecodeError as err:
            self.get_logger().error(f"turn {goal.turn_index}: bad keyframe: {err}")
            goal_handle.abort()
            return SlowThink.Result()
        request = self._request_type(
            keyframes=keyframes, context=list(zip(goal.context_roles, goal.context_texts)), query=goal.query or None,
            max_new_tokens=goal.max_new_tokens or self.params.max_new_tokens, turn_index=goal.turn_index)

        def on_text(text: str, num_tokens: int) -> None:
            if goal_handle.is_cancel_requested:
                request.cancel.set()
            goal_handle.publish_feedback(SlowThink.Feedback(partial_text=text, num_tokens=num_tokens))

        with self._one_at_a_time:
            started = time.monotonic()
            result = self.thinker.generate(request, on_text)
        if result.cancelled:
            goal_handle.canceled()
            return SlowThink.Result(text=result.text, num_tokens=result.num_tokens)
        goal_handle.succeed()
        self.get_logger().info(f"turn {goal.turn_index}: {result.num_tokens} tokens in "
                               f"{time.monotonic() - started:.2f} s")
        return SlowThink.Result(text=result.text, num_tokens=result.num_tokens, truncated=result.truncated,
                                time_to_first_token=float(result.time_to_first_token),
                                tokens_per_second=float(result.tokens_per_second))
