"""One camera stream of a lionfs_node: its camera subscription, query topic and ask service, its
assistant/guidance publishers, health, waiting questions and diagnostics, over its own engine.

A single-stream node has one port with topics relative to the node namespace (``assistant``,
``guidance``, ``query``, ``ask``, ``image_topic``); a multi-stream node has one port per stream
with topics under ``<stream id>/`` (``head/assistant``, ...), all served by one ``StreamGroup``.

Camera callbacks run one at a time (their own mutually exclusive group), so frames reach the
engine in arrival order. A camera whose clock jumps back resets the stream instead of having
every frame refused; repeated zero stamps are stamped on arrival. Every triggered turn ends with
one final AssistantMessage, with `error` set when it has no answer.
"""
from __future__ import annotations

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

from lionfs_ros.engine.stream_health import StreamHealth
from lionfs_ros.engine.types import FrameError
from lionfs_ros.msg import AssistantMessage, GuidanceEvent, UserQuery
from lionfs_ros.nodes.assistant_messages import assistant_message, guidance_event, header_or_now
from lionfs_ros.nodes.camera_input import CameraInput, stamp_seconds
from lionfs_ros.nodes.engine_setup import engine_diagnostics
from lionfs_ros.nodes.questions import QuestionBook
from lionfs_ros.srv import AskQuestion

ASSISTANT_TOPIC, GUIDANCE_TOPIC, QUERY_TOPIC, ASK_SERVICE = "assistant", "guidance", "query", "ask"
PUBLISH_DEPTH = 50
BAD_INPUT_LOG_PERIOD = 5.0
# A stamp this far behind the newest frame is a camera clock jump (reset the stream); a smaller
# step back is one late frame, refused (counted as rejected_non_monotonic).
CLOCK_JUMP_S = 0.5
# /diagnostics stays WARN this long after a stream reset (clock jump), so a monitor sees it.
RESET_WARN_S = 10.0


class StreamPort:
    def __init__(self, node, engine, stream_id: str, camera_params, prefix: str = ""):
        """``prefix``: '' (single stream) or '<id>/' for the stream's topics; ``camera_params``: its CameraInputParams."""
        self.node, self.engine, self.stream_id, self.prefix = node, engine, stream_id, prefix
        self.camera_params = camera_params
        self.params = node.params
        self.remote = None
        self.camera = None
        self.health = StreamHealth(stall_timeout=self.params.stall_timeout)
        self.questions = QuestionBook(self.params.question_timeout)
        self._reported = {"dropped": 0, "rejected": 0}
        self._decided_mark: tuple[int, float | None] = (0, None)  # for the decision rate
        self._last_header = None
        self._last_stamp: float | None = None  # newest frame handed to the engine (camera clock)
        self._reset_note, self._reset_until = "", 0.0
        self._zero_stamps = 0
        self._query_sub = self._ask_srv = None
        engine.on_decision = self._on_decision
        engine.on_response = self._on_response
        self.assistant = node.create_lifecycle_publisher(AssistantMessage, prefix + ASSISTANT_TOPIC, PUBLISH_DEPTH)
        self.guidance = node.create_lifecycle_publisher(GuidanceEvent, prefix + GUIDANCE_TOPIC, PUBLISH_DEPTH)

    def get_clock(self):
        return self.node.get_clock()

    def get_name(self) -> str:
        return self.node.get_name() + (f" {self.stream_id}" if self.prefix else "")

    def _log(self):
        return self.node.get_logger()

    # I/O.
    def open(self, callback_group) -> None:
        node = self.node
        self.camera = CameraInput(node, self.camera_params, self._on_frame, self._on_reject,
                                  callback_group=MutuallyExclusiveCallbackGroup())
        self._query_sub = node.create_subscription(UserQuery, self.prefix + QUERY_TOPIC, self._on_query, 10,
                                                   callback_group=MutuallyExclusiveCallbackGroup())
        self._ask_srv = node.create_service(AskQuestion, self.prefix + ASK_SERVICE, self._on_ask,
                                            callback_group=callback_group)

    def close(self) -> None:
        if self.camera is not None:
            self.node.destroy_subscription(self.camera.subscription)
            self.camera = None
        if self._query_sub is not None:
            self.node.destroy_subscription(self._query_sub)
            self.node.destroy_service(self._ask_srv)
            self._query_sub = self._ask_srv = None

    def destroy(self) -> None:
        for publisher in (self.assistant, self.guidance):
            self.node.destroy_lifecycle_publisher(publisher)

    # Inputs (subscription threads): decode, hand over, return.
    def _on_frame(self, rgb, header, receive_time: float) -> None:
        if header.stamp.sec == 0 and header.stamp.nanosec == 0:
            # One frame at time 0 is a bag or simulation starting; zeros again mean a driver that
            # does not stamp: from then on such frames are stamped on arrival.
            self._zero_stamps += 1
            if self._zero_stamps > 1:
                header.stamp = self.get_clock().now().to_msg()
            if self._zero_stamps == 2:
                self._log().warning(f"frames on {self.camera.resolved_topic} have zero stamps: "
                                    "stamping them on arrival with this node's clock")
        t = stamp_seconds(header.stamp)
        self._last_header = header
        self.health.frame(receive_time, t)
        self._publish_stream_events(receive_time)  # 'started' goes out before any response to this frame
        if self._last_stamp is not None and self._last_stamp - t > CLOCK_JUMP_S:
            self._reset_stream(self._last_stamp - t, header)
        try:
            self.engine.push_frame(rgb, t, meta=header)
            self._last_stamp = t
        except FrameError as err:  # counted by the engine (stats: rejected_<reason>)
            self._log().warning(f"engine refused a frame: {err}", throttle_duration_sec=BAD_INPUT_LOG_PERIOD)

    def _reset_stream(self, jump: float, header) -> None:
        """The camera's clock went back: re-anchor the engine on the new clock and say so."""
        self.engine.reset_stream()
        self.health.last_stamp = stamp_seconds(header.stamp)
        self._reset_note = f"camera clock jumped back {jump:.3f} s on {self.camera.resolved_topic}: stream reset"
        self._reset_until = stamp_seconds(self.get_clock().now().to_msg()) + max(RESET_WARN_S, self.params.diagnostics_period)
        self._log().warning(self._reset_note)
        self._publish_event(GuidanceEvent.STREAM_RESET, self._reset_note, header, score=jump)

    def _on_reject(self, reason: str, detail: str, header) -> None:
        self.health.bad_frame(reason, stamp_seconds(header.stamp))
        self._log().warning(f"rejected a message on {self.camera.resolved_topic}: {detail} "
                            f"({self.health.bad_frames} so far)", throttle_duration_sec=BAD_INPUT_LOG_PERIOD)

    def _on_query(self, msg: UserQuery) -> None:
        self._queue_question(msg.text, msg.query_id or None, msg.header if msg.header.stamp.sec else None)

    def _on_ask(self, request, response):
        if not request.text.strip():
            response.accepted, response.message = False, "empty question"
            return response
        query_id = self._queue_question(request.text, None, None)
        response.accepted = query_id is not None
        response.query_id, response.message = query_id or "", "queued" if query_id else "refused by the engine"
        return response

    def _queue_question(self, text: str, query_id: str | None, header) -> str | None:
        header = header or header_or_now(None, self.get_clock())
        t, note = self.questions.answer_time(stamp_seconds(header.stamp), self._last_stamp)
        if self.health.stalled or self._last_stamp is None:
            note += f" (no camera frame now: it waits up to {self.params.question_timeout:g} s for one)"
        try:
            query_id = self.engine.ask(text, t, query_id=query_id)
        except FrameError as err:
            self._log().warning(f"refused a question: {err}")
            return None
        self.questions.add(query_id, text, header)
        self._publish_event(GuidanceEvent.QUERY_RECEIVED, f"question {query_id}: {text}{note}", header)
        return query_id

    def _expire_questions(self) -> None:
        for question in self.questions.expired():
            if not self.engine.drop_question(question.query_id):
                continue  # a frame took it meanwhile: it is being answered
            error = f"no camera frame within {self.params.question_timeout:g} s to answer at"
            self.assistant.publish(AssistantMessage(
                header=question.header, stream_id=self.stream_id, role=AssistantMessage.ROLE_QUERY_ANSWER,
                is_final=True, query=question.text, query_id=question.query_id, error=error))
            self._publish_event(GuidanceEvent.QUERY_EXPIRED, f"question {question.query_id}: {error}", question.header)

    # Engine callbacks (engine threads).
    def _on_decision(self, decision) -> None:
        self.questions.taken(decision.query_id)
        # Only a turn that will end (answered, failed or cancelled, always with a final message) is
        # announced; a trigger skipped while the slow thinker is busy is counted (triggers_skipped).
        if decision.respond and decision.turn_index is not None:
            header = header_or_now(decision.meta, self.get_clock())
            what = f"answering {decision.query!r}" if decision.query else "speaking"
            self._publish_event(GuidanceEvent.RESPONSE_TRIGGERED, f"{what} (score {decision.score:.2f})", header,
                                score=decision.score, turn_index=decision.turn_index)

    def _on_response(self, update) -> None:
        header = header_or_now(update.trigger_meta, self.get_clock())
        message = assistant_message(update, self.stream_id, update.sequence, self.get_clock())
        if update.cancelled:
            message.error = update.error or "cancelled: a newer trigger replaced it"
        self.assistant.publish(message)  # a failed turn too: its final carries the error
        if not update.is_final:
            return
        if update.error and not update.cancelled:
            # No answer for this turn; the fast path goes on. A remote thinker's absence is also
            # reported by its availability poll, and its return as DEGRADED_RECOVERED.
            if self.remote is not None:
                self.remote.mark_failed(update.error)
            self._publish_event(GuidanceEvent.DEGRADED_MODE, f"turn {update.turn_index} has no answer: "
                                f"{update.error}", header, turn_index=update.turn_index)
            return
        summary = f"({message.error}) {update.text}" if update.cancelled else update.text
        self._publish_event(GuidanceEvent.RESPONSE_COMPLETED, summary, header, score=update.trigger_score,
                            turn_index=update.turn_index, regions=update.regions)

    # Periodic: stream health, overload, degraded mode, diagnostics.
    def check(self) -> None:
        self._publish_stream_events(stamp_seconds(self.get_clock().now().to_msg()))
        self._expire_questions()
        if self.remote is not None:
            change = self.remote.poll_availability()
            if change is not None:
                event_type = GuidanceEvent.DEGRADED_RECOVERED if change else GuidanceEvent.DEGRADED_MODE
                self._publish_event(event_type, self.remote.status_text(), header_or_now(None, self.get_clock()))

    def _publish_stream_events(self, now: float) -> None:
        for event in self.health.poll(now):
            header = self._last_header or header_or_now(None, self.get_clock())
            if event.kind == "stalled":
                summary = f"no frame for {event.value:.1f} s on {self.camera.resolved_topic}"
                self._publish_event(GuidanceEvent.STREAM_STALLED, summary, header, score=event.value)
            else:
                self._publish_event(GuidanceEvent.STREAM_STARTED, f"stream {event.kind} on {self.camera.resolved_topic}",
                                    header)

    def report(self, diagnostics) -> None:
        stats = self.engine.stats()
        header = self._last_header or header_or_now(None, self.get_clock())
        for key, event_type, what in (("dropped", GuidanceEvent.FRAMES_DROPPED, "frame(s) dropped (overload)"),
                                      ("rejected", GuidanceEvent.BAD_INPUT, "message(s) rejected")):
            total = stats.get(key, 0) + (self.health.bad_frames if key == "rejected" else 0)
            new = total - self._reported[key]
            if new > 0:
                self._publish_event(event_type, f"{new} {what}", header, count=new)
            self._reported[key] = total
        now = stamp_seconds(self.get_clock().now().to_msg())
        previous_decided, previous_time = self._decided_mark
        self._decided_mark = (stats.get("decided", 0), now)
        elapsed = now - previous_time if previous_time is not None else 0.0
        stats["decision_rate_hz"] = (stats.get("decided", 0) - previous_decided) / elapsed if elapsed > 0 else 0.0
        stats["zero_stamps"] = self._zero_stamps
        warning = self._reset_note if now < self._reset_until else ""
        diagnostics.publish(engine_diagnostics(self, stats, self.health, now, self.remote, warning))

    def _publish_event(self, event_type, summary, header, score=0.0, count=0, turn_index=0, regions=()) -> None:
        self.guidance.publish(guidance_event(event_type, self.stream_id, summary, header, score=score,
                                             count=count, turn_index=turn_index, regions=regions))

