"""The ROS side of a live replay: a player (frames + /clock) and a capture of what the node says.

Runs in its own rclpy context and executor thread, so a replay can live inside any process.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image

from lionfs_ros.replay.bag_reader import NS_PER_S
from lionfs_ros.msg import AssistantMessage, GuidanceEvent, UserQuery

IMAGE_TOPIC = "image_raw"
QUERY_TOPIC, QUERY_DEPTH = "query", 10  # lionfs_node's question topic (stream_port), reliable
ASSISTANT_TOPIC, GUIDANCE_TOPIC, DIAGNOSTICS_TOPIC, CLOCK_TOPIC = "assistant", "guidance", "/diagnostics", "/clock"
OUTPUT_DEPTH = 100  # reliable, deep enough for a burst of partials
CLOCK_HZ = 40.0  # like `ros2 bag play --clock`: sim time moves between frames too, so node timers fire
DIAGNOSTICS_NAME_SUFFIX = "lionfs_node: assistant"


def _time_msg(seconds: float):
    from builtin_interfaces.msg import Time

    total = round(seconds * NS_PER_S)
    return Time(sec=total // NS_PER_S, nanosec=total % NS_PER_S)


class ReplayGraph:
    def __init__(self, namespace: str, transport: str, domain_id: int | None, image_topic: str = IMAGE_TOPIC):
        self.context = rclpy.Context()
        kwargs = {"domain_id": domain_id} if domain_id is not None else {}
        rclpy.init(context=self.context, **kwargs)
        self.node = rclpy.create_node("lionfs_replay_player", namespace=namespace, context=self.context)
        compressed = transport == "compressed"
        self.image_type = CompressedImage if compressed else Image
        # Camera drivers publish sensor-data QoS; the node's default subscription matches it.
        self.image_pub = self.node.create_publisher(
            self.image_type, image_topic + ("/compressed" if compressed else ""), qos_profile_sensor_data)
        self.clock_pub = self.node.create_publisher(Clock, CLOCK_TOPIC, QoSProfile(depth=10))
        self.query_pub = self.node.create_publisher(UserQuery, QUERY_TOPIC, QUERY_DEPTH)
        reliable = QoSProfile(depth=OUTPUT_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        from lionfs_ros.replay.turns import TurnAssembler

        self.assembler = TurnAssembler()
        self._lock = threading.Lock()
        self._last_arrival = 0.0
        self._diagnostics: list[tuple[float, dict]] = []
        self._events: defaultdict[int, int] = defaultdict(int)  # event type -> count field sum
        self._event_messages = 0
        self.notes: list[str] = []
        self.assistant_sub = self.node.create_subscription(AssistantMessage, ASSISTANT_TOPIC, self._on_assistant, reliable)
        self.node.create_subscription(GuidanceEvent, GUIDANCE_TOPIC, self._on_guidance, reliable)
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, 10)
        self.executor = MultiThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        self._clock_origin: tuple[float, float, float] | None = None  # (sim origin, wall origin, rate)
        self._clock_stop = threading.Event()
        self._clock_thread: threading.Thread | None = None
        self._serialize = None

    # Startup.
    def connected(self) -> bool:
        """The node subscribes to our camera topic and publishes its answers."""
        return self.image_pub.get_subscription_count() > 0 and self.assistant_sub.get_publisher_count() > 0

    # Clock and frames.
    def start_clock(self, sim_origin_s: float, rate: float) -> None:
        self._clock_origin = (sim_origin_s, time.monotonic(), rate)
        self.clock_pub.publish(Clock(clock=_time_msg(sim_origin_s)))
        self._clock_thread = threading.Thread(target=self._clock_loop, daemon=True)
        self._clock_thread.start()

    def sim_now(self) -> float:
        origin, wall, rate = self._clock_origin
        return origin + (time.monotonic() - wall) * rate

    def _clock_loop(self) -> None:
        while not self._clock_stop.wait(1.0 / CLOCK_HZ):
            self.clock_pub.publish(Clock(clock=_time_msg(self.sim_now())))

    def wait_until_due(self, stamp_s: float) -> None:
        origin, wall, rate = self._clock_origin
        delay = wall + (stamp_s - origin) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def publish_frame(self, frame, restamp: bool) -> float:
        """Publish the frame as recorded (CDR bytes, no re-encoding); returns when it went out (monotonic)."""
        message = frame.message
        if restamp:  # an unstamped driver: the node must see the clock we play on
            stamp = _time_msg(frame.stamp_s)
            message.header.stamp.sec, message.header.stamp.nanosec = stamp.sec, stamp.nanosec
        data = bytes(self._store().serialize_cdr(message, frame.msgtype))
        self.clock_pub.publish(Clock(clock=_time_msg(max(frame.stamp_s, self.sim_now()))))
        sent = time.monotonic()
        self.image_pub.publish(data)
        return sent

    def publish_question(self, question) -> None:
        """A bag's question (``replay.questions.BagQuestion``) to the node's query topic, stamped with its time on
        the played clock: the node answers it at its first decided frame at or after that time."""
        from std_msgs.msg import Header

        self.query_pub.publish(UserQuery(header=Header(stamp=_time_msg(question.stamp_s)), text=question.text,
                                         query_id=question.query_id))

    def asks_reach_the_node(self) -> bool:
        return self.query_pub.get_subscription_count() > 0

    def _store(self):
        if self._serialize is None:
            from lionfs_ros.replay.ros_types import default_typestore

            self._serialize = default_typestore()
        return self._serialize

    def stop_clock(self) -> None:
        self._clock_stop.set()
        if self._clock_thread is not None:
            self._clock_thread.join(timeout=2)

    # Capture.
    def _on_assistant(self, msg: AssistantMessage) -> None:
        now = time.monotonic()
        with self._lock:
            self.assembler.add(msg, now)
            self._last_arrival = now

    def _on_guidance(self, msg: GuidanceEvent) -> None:
        with self._lock:
            self._event_messages += 1
            self._events[msg.event_type] += msg.count

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        for status in msg.status:
            if status.name.endswith(DIAGNOSTICS_NAME_SUFFIX):
                with self._lock:
                    self._diagnostics.append((now, {kv.key: kv.value for kv in status.values}))

    def last_arrival(self) -> float:
        with self._lock:
            return self._last_arrival

    def diagnostics_since(self, moment: float) -> bool:
        with self._lock:
            return any(t > moment for t, _ in self._diagnostics)

    def last_diagnostics(self) -> dict:
        with self._lock:
            return dict(self._diagnostics[-1][1]) if self._diagnostics else {}

    def all_diagnostics(self) -> list[dict]:
        with self._lock:
            return [values for _, values in self._diagnostics]

    def saw_guidance(self) -> bool:
        with self._lock:
            return self._event_messages > 0

    def frames_dropped_events(self) -> int:
        with self._lock:
            return self._events[GuidanceEvent.FRAMES_DROPPED]

    def shutdown(self) -> None:
        self.stop_clock()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._spinner.join(timeout=5)
