"""Deterministic mode: frames by bag time straight through the engine, on this thread, no ROS graph.

The engine runs synchronously (`process_frame` writes any answer inline, right after the
triggering frame, before returning), so the same bag, model and settings give the same
responses on every run. Latencies here are compute only: from handing the frame to the engine
to the final (or first) text of its answer.
"""
from __future__ import annotations

import time
from typing import Iterator

from lionfs_ros.replay.bag_frames import BagFrame
from lionfs_ros.replay.records import ResponseRecord, RunOutput
from lionfs_ros.replay.replay_params import node_params
from lionfs_ros.replay.runners import RunnerFailed
from lionfs_ros.eval.stats import own_peak_rss_mib, torch_peak_gpu_mib


class _TurnTiming:
    """First and last update of each turn, on the perf counter, and the frame that started it."""

    def __init__(self, log):
        self.log = log
        self.updates: dict[int, list] = {}  # turn -> [first_time, last_update, last_time, count, frame_start]
        self.frame_start = 0.0

    def on_response(self, update) -> None:
        now = time.perf_counter()
        entry = self.updates.get(update.turn_index)
        if entry is None:
            self.updates[update.turn_index] = [now, update, now, 1, self.frame_start]
            if isinstance(update.trigger_meta, int):
                self.log.thumbnails.claim(update.trigger_meta)  # now, while the frame is still in the ring
        else:
            entry[1], entry[2], entry[3] = update, now, entry[3] + 1


class DeterministicRunner:
    mode = "deterministic"

    def __init__(self, settings):
        self.params = node_params(settings)  # a bad params file fails here, before the bag is read
        self.engine = None
        self.description = ""
        self.collector = None

    def prepare(self, image_msgtype: str, has_truth: bool) -> None:
        from lionfs_ros.eval.teacher_forced import TeacherForcedCollector

        torch_reset_peak()
        self.engine, self.description = self._engine()
        if has_truth:
            engine = self.engine
            self.collector = TeacherForcedCollector(engine.model, engine.cfg.general_fps, engine.threshold,
                                                    engine.cfg.system_prompt)

    def _engine(self):
        from lionfs_ros.engine import EngineConfigError, StreamEngine
        from lionfs_ros.model_loading import ModelLoadError, load_for_inference
        from lionfs_ros.config import engine_config

        try:
            model, path, device = load_for_inference(self.params.model_path, self.params.device, self.params.dtype)
            return StreamEngine(model, engine_config(self.params)), f"{path} on {device}"
        except (ModelLoadError, EngineConfigError, FileNotFoundError) as err:
            raise RunnerFailed(f"cannot start the engine: {err}") from err

    def run(self, frames: Iterator[BagFrame], log, bag, questions=()) -> RunOutput:
        """``questions``: the bag's ``BagQuestion``s, asked up front at their times (the engine answers each at its
        first decided frame at or after it, as it answers a robot's user, and as ``lionfs eval`` asks a clip's)."""
        from lionfs_ros.engine import FrameError

        engine = self.engine
        output = RunOutput(mode=self.mode, model=self.description)
        timing = _TurnTiming(log)
        engine.on_response = timing.on_response
        refused = 0
        for question in questions:
            try:
                engine.ask(question.text, question.stamp_s, query_id=question.query_id)
            except FrameError:  # empty text or a bad time: counted by the engine (rejected_*), noted here
                refused += 1
        if refused:
            output.notes.append(f"the engine refused {refused} of the bag's question(s) "
                                "(see assistant_stats rejected_*)")
        rejected = 0
        started = time.perf_counter()
        ego_frames = 0
        for frame in frames:
            output.frames.fed += 1
            timing.frame_start = time.perf_counter()
            try:
                decision = engine.process_frame(frame.rgb, frame.stamp_s, meta=frame.index)
            except FrameError:
                rejected += 1
                continue
            if decision is not None:
                output.frame_decision_latencies_s.append(decision.compute_s)
            if self.collector is not None:
                # How the engine routed the frame (decided, ego window only, or skipped) from its own counters.
                ego_now = engine.stats()["ego_frames"]
                self.collector.add(frame.rgb, frame.stamp_s, decision is not None, ego_now > ego_frames)
                ego_frames = ego_now
        engine.flush()
        output.wall_time_s = time.perf_counter() - started - (self.collector.seconds if self.collector else 0.0)
        output.responses = _records(timing, log)
        stats = engine.stats()
        output.assistant_stats = stats
        output.frames.processed = stats["decided"]
        output.frames.dropped_engine = stats["dropped"]
        if rejected:
            output.notes.append(f"the engine refused {rejected} frame(s) (see assistant_stats rejected_*)")
        cancelled = sum(1 for entry in timing.updates.values() if entry[1].cancelled)
        if cancelled:
            output.notes.append(f"{cancelled} response(s) cancelled or dropped by the engine (not scored)")
        output.memory.rss_mib, output.memory.gpu_mib = own_peak_rss_mib(), torch_peak_gpu_mib()
        output.memory.process = "lionfs replay (engine in process)"
        return output


    def stream_metrics(self, truth, frame_stats) -> dict | None:
        """Teacher-forced metrics over the decided frames, with the truth as the assistant's turns."""
        if self.collector is None or truth is None:
            return None
        origin = frame_stats.origin_s or 0.0
        metrics = self.collector.evaluate([(event.time + origin, event.text) for event in truth.events])
        if "scored_until_clock_s" in metrics:
            metrics["scored_until_s"] = metrics.pop("scored_until_clock_s") - origin
        return metrics


def torch_reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


REGION_KEYS = ("x0", "y0", "x1", "y1", "label", "score")


def _records(timing: _TurnTiming, log) -> list[ResponseRecord]:
    records = []
    for turn_index, (first_at, update, last_at, count, frame_start) in sorted(timing.updates.items()):
        if update.cancelled:
            continue
        frame_index = update.trigger_meta if isinstance(update.trigger_meta, int) else None
        records.append(ResponseRecord(
            turn_index=turn_index, trigger_time=log.video_time(update.trigger_time), text=update.text,
            is_final=update.is_final, frame_index=frame_index, score=float(update.trigger_score),
            num_tokens=int(update.num_tokens), query=update.query or "", query_id=update.query_id or "",
            latency_s=last_at - frame_start if update.is_final else None, first_latency_s=first_at - frame_start,
            decision_latency_s=update.decision_latency_s, generation_latency_s=update.generation_latency_s,
            messages=count, regions=[dict(zip(REGION_KEYS, region)) for region in update.regions]))
    return records
