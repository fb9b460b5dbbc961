"""Recorded mode: score the assistant messages a bag already holds (a session taped with `lionfs record`).

No model runs. Latency is what the recorder saw: the log time of a turn's messages minus the log
time of its triggering frame (same recorder, same clock), so it includes transport both ways.
"""
from __future__ import annotations

from typing import Iterator

from lionfs_ros.replay.bag_frames import BagFrame
from lionfs_ros.replay.bag_reader import NS_PER_S, BagReader, BagReadError
from lionfs_ros.replay.records import RunOutput
from lionfs_ros.replay.turns import TurnAssembler

ASSISTANT_TYPE = "lionfs_ros/msg/AssistantMessage"
GUIDANCE_TYPE = "lionfs_ros/msg/GuidanceEvent"


class RecordedRunner:
    mode = "recorded"

    def __init__(self, assistant_topic: str | None = None):
        self.assistant_topic = assistant_topic

    def prepare(self, image_msgtype: str, has_truth: bool) -> None:
        """Nothing to start: the responses are in the bag."""

    def stream_metrics(self, truth, frame_stats) -> dict | None:
        return None  # teacher forcing needs the model: deterministic mode

    def run(self, frames: Iterator[BagFrame], log, bag: BagReader, questions=()) -> RunOutput:
        """``questions``: not asked (the answers are in the bag already, matched to them by query id)."""
        output = RunOutput(mode=self.mode, model="recorded in the bag")
        for _ in frames:
            output.frames.fed += 1
        topics = [t.name for t in bag.topics_of_type((ASSISTANT_TYPE,))]
        if self.assistant_topic:
            topics = [self.assistant_topic]
        if not topics:
            output.notes.append(f"the bag has no {ASSISTANT_TYPE} topic: nothing to score")
            return output
        if len(topics) > 1:
            output.notes.append(f"assistant messages from {len(topics)} topics: {', '.join(topics)}")
        assembler = TurnAssembler()
        guidance = [t.name for t in bag.topics_of_type((GUIDANCE_TYPE,))]
        dropped = 0
        try:
            for item in bag.messages(topics + guidance):
                if item.msgtype == ASSISTANT_TYPE:
                    assembler.add(item.message, item.log_time_ns / NS_PER_S)
                elif item.message.event_type == item.message.FRAMES_DROPPED:
                    dropped += item.message.count
        except BagReadError as err:
            output.notes.append(f"assistant messages read only in part: {err.detail}")
        output.frames.dropped_engine = dropped if guidance else None
        output.responses = assembler.records(log.index_of, log.video_time, log.log_time)
        return output
