"""Questions waiting for a frame: when to answer them, and giving up on them instead of hanging.

The engine answers a question at the first decided frame at or after its time. A question stamped
far ahead of the camera's clock (another clock, a wrong stamp) would wait until the camera catches
up, and one asked while the camera is stalled waits for a frame that may never come: both are
bounded here. Thread-safe: the query topic, the ask service, the engine's thread and the node's
timer all touch it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

# A question stamped more than this ahead of the newest frame is answered at the next frame.
AHEAD_TOLERANCE_S = 1.0


@dataclass
class WaitingQuestion:
    query_id: str
    text: str
    header: object
    deadline: float  # time.monotonic()


class QuestionBook:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self._waiting: dict[str, WaitingQuestion] = {}
        self._lock = threading.Lock()

    @staticmethod
    def answer_time(asked: float, newest_frame: float | None) -> tuple[float, str]:
        """(the time the engine should answer at, a note for the QUERY_RECEIVED event)."""
        if newest_frame is not None and asked > newest_frame + AHEAD_TOLERANCE_S:
            return newest_frame, (f" (stamped {asked - newest_frame:.1f} s ahead of the newest camera frame: "
                                  f"answered at the next frame)")
        return asked, ""

    def add(self, query_id: str, text: str, header) -> None:
        with self._lock:
            self._waiting[query_id] = WaitingQuestion(query_id, text, header, time.monotonic() + self.timeout)

    def taken(self, query_id: str | None) -> None:
        """The engine decided a frame for this question: it no longer waits."""
        if query_id:
            with self._lock:
                self._waiting.pop(query_id, None)

    def expired(self) -> list[WaitingQuestion]:
        """Questions past their deadline, removed from the book."""
        now = time.monotonic()
        with self._lock:
            late = [q for q in self._waiting.values() if q.deadline <= now]
            for question in late:
                del self._waiting[question.query_id]
        return late
