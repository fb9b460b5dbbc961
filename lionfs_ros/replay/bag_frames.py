"""Camera frames out of a bag: decoded to RGB, on one clock, with bad messages counted, not fatal.

Time base: frames are placed by their header stamps, the camera's own clock, as the node sees
them live. Some drivers leave stamps at zero; when the first two frames both carry a zero stamp
the bag's log (receive) times are used instead. Report times are seconds from the first frame.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from lionfs_ros.replay.bag_reader import NS_PER_S, BagMessage, BagReader
from lionfs_ros.image_codec import ImageDecodeError, decode_compressed, decode_raw

STAMP_SOURCE_HEADER, STAMP_SOURCE_LOG = "header.stamp", "log time"


@dataclass(frozen=True)
class BagFrame:
    index: int  # among the decoded frames, from 0
    stamp_s: float  # on the chosen clock (header stamp, or log time for unstamped drivers)
    log_time_s: float
    rgb: np.ndarray  # HxWx3 uint8
    header: object  # the message's header as read (frame_id, stamp), passed to the engine as meta
    message: object  # the whole message as read, for live mode to publish exactly what was recorded
    msgtype: str


@dataclass
class FrameStats:
    decoded: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> count
    stamp_source: str = STAMP_SOURCE_HEADER
    origin_s: float | None = None  # clock value of the first frame: video time 0
    origin_log_s: float | None = None  # log time of the first frame
    last_s: float | None = None
    size: tuple[int, int] | None = None  # (width, height) of the first frame

    def video_time(self, clock_s: float) -> float:
        return clock_s - (self.origin_s or 0.0)

    def to_dict(self) -> dict:
        return {"decoded": self.decoded, "rejected": dict(self.rejected), "stamp_source": self.stamp_source,
                "origin_s": self.origin_s, "duration_s": (self.last_s - self.origin_s) if self.decoded else 0.0,
                "width": self.size[0] if self.size else None, "height": self.size[1] if self.size else None}


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec / NS_PER_S


def decode_image(msg) -> np.ndarray:
    """A deserialized Image or CompressedImage -> RGB. Same rule as the node's camera input, without rclpy."""
    if hasattr(msg, "encoding"):
        return decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))
    return decode_compressed(msg.format, msg.data)


def _is_zero(stamp) -> bool:
    return stamp.sec == 0 and stamp.nanosec == 0


def iter_frames(bag: BagReader, topic: str, stats: FrameStats) -> Iterator[BagFrame]:
    """Decoded frames of `topic` in bag order; `stats` fills in as they go (also on a partial read)."""
    first: BagMessage | None = None
    for item in bag.messages([topic]):
        if first is None:
            first = item
            continue
        if stats.decoded == 0 and not stats.rejected:
            both_zero = _is_zero(first.message.header.stamp) and _is_zero(item.message.header.stamp)
            stats.stamp_source = STAMP_SOURCE_LOG if both_zero else STAMP_SOURCE_HEADER
            yield from _decode(first, stats)
        yield from _decode(item, stats)
    if first is not None and stats.decoded == 0 and not stats.rejected:
        yield from _decode(first, stats)  # a one-frame bag


def _decode(item: BagMessage, stats: FrameStats) -> Iterator[BagFrame]:
    header = item.message.header
    log_s = item.log_time_ns / NS_PER_S
    clock_s = stamp_seconds(header.stamp) if stats.stamp_source == STAMP_SOURCE_HEADER else log_s
    try:
        rgb = decode_image(item.message)
    except ImageDecodeError as err:
        stats.rejected[err.reason] += 1
        return
    if stats.origin_s is None:
        stats.origin_s, stats.origin_log_s, stats.size = clock_s, log_s, (rgb.shape[1], rgb.shape[0])
    stats.last_s = clock_s
    index = stats.decoded
    stats.decoded += 1
    yield BagFrame(index, clock_s, log_s, rgb, header, item.message, item.msgtype)
