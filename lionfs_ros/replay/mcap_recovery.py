"""Read what is left of an MCAP file whose end is missing (a recorder killed, a disk full, a copy cut short).

rosbags' indexed reader needs the footer at the end of the file. A truncated file has none, but
MCAP's data section is a plain sequence of records (opcode u8, length u64, content), and rosbag2
writers put schemas and channels before the messages that use them, so everything up to the
last complete record (or complete chunk) can still be read in file order. Stops quietly at the
first incomplete record and says where, so the caller can report how much was lost.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, Iterator

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_DATA_END = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F
RECORD_PREFIX = 9  # opcode (1) + content length (8)
MESSAGE_FIXED = 22  # channel id (2) + sequence (4) + log time (8) + publish time (8)
CHUNK_FIXED = 28  # start time (8) + end time (8) + uncompressed size (8) + crc (4)


class McapTruncated(Exception):
    """The file's data ended inside a record; `offset` is where the incomplete record starts."""

    def __init__(self, offset: int, detail: str):
        super().__init__(f"incomplete record at byte {offset}: {detail}")
        self.offset = offset


@dataclass(frozen=True)
class RecoveredSchema:
    id: int
    name: str
    encoding: str
    data: str


@dataclass(frozen=True)
class RecoveredChannel:
    id: int
    topic: str
    msgtype: str
    message_encoding: str


@dataclass
class ScanState:
    schemas: dict[int, RecoveredSchema] = field(default_factory=dict)
    channels: dict[int, RecoveredChannel] = field(default_factory=dict)
    messages: int = 0
    complete: bool = False  # reached the data-end record or the footer


def _read_exact(stream: BinaryIO, size: int, offset: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise McapTruncated(offset, f"{what} needs {size} bytes, {len(data)} left")
    return data


def _string(buf: BytesIO) -> str:
    (length,) = struct.unpack("<I", buf.read(4))
    return buf.read(length).decode()


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    # Same codecs as rosbags (its dependencies): zstd from backports.zstd, lz4 from lz4.
    if compression == "":
        return data
    if compression == "zstd":
        try:
            from compression import zstd  # Python 3.14+
        except ImportError:
            from backports import zstd
        return zstd.decompress(data)
    if compression == "lz4":
        from lz4.frame import decompress

        return decompress(data)
    raise ValueError(f"unsupported chunk compression {compression!r}")


def _records(stream: BinaryIO, end: int, base: int) -> Iterator[tuple[int, int, bytes]]:
    """(opcode, offset, content) of each complete record up to `end`."""
    while stream.tell() < end:
        offset = base + stream.tell()
        prefix = stream.read(RECORD_PREFIX)
        if len(prefix) < RECORD_PREFIX:
            raise McapTruncated(offset, "record header cut")
        opcode, length = struct.unpack("<BQ", prefix)
        yield opcode, offset, _read_exact(stream, length, offset, f"record 0x{opcode:02x}")


def scan(path: Path, state: ScanState) -> Iterator[tuple[RecoveredChannel, int, bytes]]:
    """Yield (channel, log time ns, CDR bytes) in file order; raises McapTruncated where the data stops."""
    with open(path, "rb") as stream:
        if stream.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{path} is not an MCAP file (bad magic)")
        size = path.stat().st_size
        for opcode, offset, content in _records(stream, size, 0):
            if opcode in (OP_DATA_END, OP_FOOTER):
                state.complete = True
                return
            if opcode == OP_CHUNK:
                yield from _chunk(content, offset, state)
            else:
                yield from _record(opcode, content, state)


def _chunk(content: bytes, offset: int, state: ScanState) -> Iterator[tuple[RecoveredChannel, int, bytes]]:
    buf = BytesIO(content)
    _, _, uncompressed_size, _ = struct.unpack("<QQQI", buf.read(CHUNK_FIXED))
    compression = _string(buf)
    (compressed_size,) = struct.unpack("<Q", buf.read(8))
    raw = _decompress(buf.read(compressed_size), compression, uncompressed_size)
    inner = BytesIO(raw)
    for opcode, _, record in _records(inner, len(raw), offset):
        yield from _record(opcode, record, state)


def _record(opcode: int, content: bytes, state: ScanState) -> Iterator[tuple[RecoveredChannel, int, bytes]]:
    buf = BytesIO(content)
    if opcode == OP_SCHEMA:
        (schema_id,) = struct.unpack("<H", buf.read(2))
        name, encoding = _string(buf), _string(buf)
        (length,) = struct.unpack("<I", buf.read(4))
        state.schemas[schema_id] = RecoveredSchema(schema_id, name, encoding, buf.read(length).decode())
    elif opcode == OP_CHANNEL:
        channel_id, schema_id = struct.unpack("<HH", buf.read(4))
        topic, message_encoding = _string(buf), _string(buf)
        schema = state.schemas.get(schema_id)
        state.channels[channel_id] = RecoveredChannel(channel_id, topic, schema.name if schema else "", message_encoding)
    elif opcode == OP_MESSAGE:
        channel_id, _, log_time, _ = struct.unpack("<HIQQ", buf.read(MESSAGE_FIXED))
        channel = state.channels.get(channel_id)
        if channel is not None:
            state.messages += 1
            yield channel, log_time, content[MESSAGE_FIXED:]
