"""Assistant messages (partials, then a final per turn) -> one ResponseRecord per turn.

Shared by live mode (messages as they arrive) and recorded mode (messages in a bag). A turn is
keyed by (stream id, turn index). Latencies are arrival time minus the arrival time of the
triggering frame on the same clock (wall clock live, the recorder's log time for a bag).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lionfs_ros.replay.records import ResponseRecord

NS_PER_S = 1_000_000_000


def duration_s(duration) -> float:
    return duration.sec + duration.nanosec / NS_PER_S


@dataclass
class _Turn:
    stamp_s: float
    first_arrival_s: float
    last_arrival_s: float
    message: object  # the latest message of the turn (final once it came)
    count: int
    final: bool


class TurnAssembler:
    def __init__(self):
        self._turns: dict[tuple[str, int], _Turn] = {}

    def add(self, message, arrival_s: float) -> None:
        """`message`: an AssistantMessage (rclpy or rosbags); `arrival_s`: when it arrived."""
        key = (message.stream_id, int(message.turn_index))
        stamp_s = message.header.stamp.sec + message.header.stamp.nanosec / NS_PER_S
        turn = self._turns.get(key)
        if turn is None:
            self._turns[key] = _Turn(stamp_s, arrival_s, arrival_s, message, 1, bool(message.is_final))
            return
        turn.count += 1
        if turn.final:
            return  # a stale partial after the final changes nothing
        if message.is_final or message.sequence >= turn.message.sequence:
            turn.message, turn.last_arrival_s, turn.final = message, arrival_s, bool(message.is_final)

    @property
    def open_turns(self) -> int:
        return sum(not t.final for t in self._turns.values())

    def records(self, frame_index: Callable[[float], int | None], video_time: Callable[[float], float],
                frame_arrival: Callable[[float], float | None]) -> list[ResponseRecord]:
        """One record per turn, in trigger order. `frame_arrival(stamp)`: when that frame went out, or None."""
        out = []
        for (_, turn_index), turn in sorted(self._turns.items(), key=lambda item: (item[1].stamp_s, item[0])):
            message, sent = turn.message, frame_arrival(turn.stamp_s)
            out.append(ResponseRecord(
                turn_index=turn_index, trigger_time=video_time(turn.stamp_s), text=message.text, is_final=turn.final,
                frame_index=frame_index(turn.stamp_s), score=float(message.trigger_score),
                num_tokens=int(message.num_tokens), query=message.query, query_id=message.query_id,
                latency_s=turn.last_arrival_s - sent if sent is not None and turn.final else None,
                first_latency_s=turn.first_arrival_s - sent if sent is not None else None,
                decision_latency_s=duration_s(message.decision_latency),
                generation_latency_s=duration_s(message.generation_latency), messages=turn.count))
        return out
