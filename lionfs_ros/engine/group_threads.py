"""The threads' parts of a ``StreamGroup`` (``multi_stream.py``): each stream's frame queue rings the group's
doorbell (the one fast thread waits on it), and the one slow thread serves every stream's jobs round-robin."""
from __future__ import annotations

import threading
from collections import OrderedDict, deque

from .frame_queue import FrameQueue, QueuedFrame
from .slow_worker import SlowWorker


class GroupQueue(FrameQueue):
    """A stream's frame queue that also rings the group's doorbell."""

    def __init__(self, capacity: int, doorbell: threading.Event):
        super().__init__(capacity)
        self.doorbell = doorbell

    def put(self, item: QueuedFrame) -> None:
        super().put(item)
        self.doorbell.set()

    def wake(self) -> None:
        super().wake()
        self.doorbell.set()

    def pop(self) -> QueuedFrame | None:
        with self._cond:
            return self._items.popleft() if self._items else None


class SharedSlot(SlowWorker):
    """A stream's slow worker whose jobs run on the group's one slow thread."""

    def __init__(self, worker: SlowWorker, pool: "FairSlowPool", stream_id: str):
        super().__init__(worker.thinker, worker.emit, worker.on_done)
        self.pool, self.stream_id = pool, stream_id

    def start(self) -> None:
        pass  # the pool's thread runs the jobs

    def stop(self, timeout: float) -> None:
        pass

    def submit(self, job, request) -> None:
        self.pool.submit(self, job, request)


class FairSlowPool:
    """One slow thread for all streams; waiting jobs are served round-robin by stream."""

    def __init__(self):
        self._waiting: OrderedDict[str, deque] = OrderedDict()  # stream id -> its jobs, in order
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.served: dict[str, int] = {}

    def submit(self, slot: SharedSlot, job, request) -> None:
        with self._cond:
            self._waiting.setdefault(slot.stream_id, deque()).append((slot, job, request))
            self._cond.notify()

    def next_item(self):
        """The next stream's oldest job (that stream then goes to the back of the line), or None."""
        with self._cond:
            for stream_id, jobs in self._waiting.items():
                if jobs:
                    self._waiting.move_to_end(stream_id)
                    return jobs.popleft()
        return None

    def run_one(self) -> bool:
        item = self.next_item()
        if item is None:
            return False
        slot, job, request = item
        slot.outcomes.append(slot.run(job, request))
        self.served[slot.stream_id] = self.served.get(slot.stream_id, 0) + 1
        slot.on_done()
        return True

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="lionfs-slow-group", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not any(self._waiting.values()):
                    self._cond.wait()
                if self._stopping and not any(self._waiting.values()):
                    return
            self.run_one()
