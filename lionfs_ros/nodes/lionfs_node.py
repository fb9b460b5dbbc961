"""lionfs_node: the assistant on the ROS graph (a lifecycle node).

configure loads the model and builds the engine; activate subscribes to the camera(s) and the
query topic(s) and starts the engine's threads; deactivate stops both. Callbacks only decode and
hand work to the engine (which keeps the newest frame under overload); the engine calls back
from its own threads, and those callbacks publish.

One stream (default): topics relative to the node namespace (``image_topic``, ``assistant``,
``guidance``, ``query``, ``ask``). Several (``streams: "head=/head/image_raw, wrist_left"``): one
model and one ``StreamGroup`` (one fast thread batching the streams' vision towers and LLM step,
one fair slow thread); each stream has its own engine context, KV budget, rate gate, questions and health, and
its topics under ``<id>/``. The per-stream I/O is ``StreamPort``'s (``stream_port.py``).
"""
from __future__ import annotations

import dataclasses

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from lionfs_ros.config import DYNAMIC_PARAMS, ConfigError, LionFSNodeParams, engine_threshold, parse_streams
from lionfs_ros.nodes.diagnostics import DIAGNOSTICS_TOPIC
from lionfs_ros.nodes.engine_setup import build_engine
from lionfs_ros.nodes.params import declare_params, validation_result
from lionfs_ros.nodes.stream_port import StreamPort

STALL_CHECKS_PER_TIMEOUT = 10
DYNAMIC = DYNAMIC_PARAMS["lionfs_node"]


class LionFSNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("lionfs_node", **kwargs)
        self.params: LionFSNodeParams = declare_params(self, LionFSNodeParams, DYNAMIC)
        where = f"node {self.get_fully_qualified_name()}: streams"
        self.streams = parse_streams(self.params.streams, where)
        if self.streams and self.params.slow_thinker == "remote":
            raise ConfigError(f"{where}: several streams need slow_thinker 'local' ('remote' is not supported with streams yet)")
        self.engine = None  # a StreamEngine (one stream) or a StreamGroup (several)
        self.remote = None
        self.ports: list[StreamPort] = []
        self._group = ReentrantCallbackGroup()
        self._timers = []
        self.add_on_set_parameters_callback(self._check_parameters)  # the whole batch, before any change
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._autostart = None
        self.startup_failed = False
        if self.params.autostart:
            self._autostart = self.create_timer(0.0, self._autostart_once, callback_group=self._group)

    # Lifecycle.
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.engine, self.remote, info = build_engine(self, self.params, self._group, self.streams)
        except Exception as err:  # a bad model path or checkpoint must not kill the process
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        if self.streams:
            self.ports = [StreamPort(self, self.engine[s.stream_id], s.stream_id,
                                     dataclasses.replace(self.params, image_topic=s.image_topic), f"{s.stream_id}/")
                          for s in self.streams]
        else:
            self.ports = [StreamPort(self, self.engine, self.params.stream_id, self.params)]
            self.ports[0].remote = self.remote
        self.diagnostics = self.create_lifecycle_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.get_logger().info(f"configured: {info}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        p = self.params
        for port in self.ports:
            port.open(self._group)
        self._timers = [
            self.create_timer(p.stall_timeout / STALL_CHECKS_PER_TIMEOUT, self._check_streams, callback_group=self._group),
            self.create_timer(p.diagnostics_period, self._report, callback_group=self._group),
        ]
        self.engine.start()
        watching = ", ".join(port.camera.resolved_topic for port in self.ports)
        answering = ", ".join(port.assistant.topic_name for port in self.ports)
        self.get_logger().info(f"active: watching {watching}, answering on {answering}")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._teardown_io()
        self.engine.stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        for port in self.ports:
            port.destroy()
        self.destroy_lifecycle_publisher(self.diagnostics)
        self.ports = []
        self.engine = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._teardown_io()
        if self.engine is not None:
            self.engine.stop()
        return TransitionCallbackReturn.SUCCESS

    def _autostart_once(self) -> None:
        """Configure and activate by ourselves; if that fails, end the process (exit 1) so a
        supervisor sees it, instead of idling unconfigured."""
        self.destroy_timer(self._autostart)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()
        else:
            self.startup_failed = True
            self.context.try_shutdown()

    def _teardown_io(self) -> None:
        for port in self.ports:
            port.close()
        for timer in self._timers:
            self.destroy_timer(timer)
        self._timers = []

    # Periodic: each stream's health, questions, degraded mode and diagnostics.
    def _check_streams(self) -> None:
        for port in self.ports:
            port.check()

    def _report(self) -> None:
        for port in self.ports:
            port.report(self.diagnostics)

    # Parameters.
    def _check_parameters(self, changes) -> SetParametersResult:
        """Validate the whole batch (set_parameters_atomically) before any of it takes effect."""
        ok, reason, _ = validation_result(LionFSNodeParams, changes, DYNAMIC, f"node {self.get_name()}")
        return SetParametersResult(successful=ok, reason=reason)

    def _apply_parameters(self, changes) -> None:
        """Called by rclpy only after the batch was accepted and stored; applies to every stream."""
        _, _, values = validation_result(LionFSNodeParams, changes, DYNAMIC, f"node {self.get_name()}")
        for name, value in values.items():
            setattr(self.params, name, value)
            for port in self.ports:
                if name == "threshold":
                    port.engine.set_threshold(engine_threshold(value))
                else:
                    port.engine.set_trigger_policy(value)
