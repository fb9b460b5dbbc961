"""Read any rosbag2 (mcap or sqlite3, a bag directory or a bare storage file) with `rosbags`.

Not only our own bags: whatever a camera driver and `ros2 bag record` wrote. Messages are
deserialized with the bag's embedded definitions where it has them (see `ros_types`).
A bag whose end is missing (mcap without footer) is read up to the damage in file order and
flagged; any other failure raises `BagReadError` with the bag and the reason named.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from lionfs_ros.replay import mcap_recovery

NS_PER_S = 1_000_000_000
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
STORAGE_BY_SUFFIX = {".mcap": "mcap", ".db3": "sqlite3"}


class BagReadError(RuntimeError):
    """The bag cannot be read (or stopped being readable part-way). `partial` is True in the second case."""

    def __init__(self, path: Path, detail: str, partial: bool = False):
        super().__init__(f"{path}: {detail}")
        self.path, self.detail, self.partial = path, detail, partial


@dataclass(frozen=True)
class BagTopic:
    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class BagSummary:
    path: str
    storage: str  # "mcap" | "sqlite3"
    topics: tuple[BagTopic, ...]
    message_count: int
    start_s: float | None  # log time of the first message
    end_s: float | None
    damage: str | None  # why only part of the bag is readable; None for an intact bag

    def topic(self, name: str) -> BagTopic | None:
        return next((t for t in self.topics if t.name == name), None)

    def to_dict(self) -> dict:
        return {"path": self.path, "storage": self.storage, "message_count": self.message_count,
                "start_s": self.start_s, "end_s": self.end_s, "damage": self.damage,
                "topics": [{"name": t.name, "type": t.msgtype, "count": t.count} for t in self.topics]}


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    message: Any  # a rosbags message object (fields like the ROS message's)


def _storage_file(path: Path) -> Path | None:
    """The single storage file of a bag directory without metadata.yaml (recorder died before writing it)."""
    files = [p for p in sorted(path.iterdir()) if p.suffix in STORAGE_BY_SUFFIX]
    return files[0] if len(files) == 1 else None


def _embedded_definitions(connections) -> dict:
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    types: dict = {}
    for connection in connections:
        definition = connection.msgdef
        if definition.format == MessageDefinitionFormat.MSG and definition.data:
            types.update(get_types_from_msg(definition.data, connection.msgtype))
        elif definition.format == MessageDefinitionFormat.IDL and definition.data:
            separator = "=" * 80 + "\n"
            parts = definition.data.split(separator)[1:] if definition.data.startswith(separator) else [definition.data]
            for part in parts:
                types.update(get_types_from_idl(part.split("\n", 1)[1] if part.startswith("IDL: ") else part))
    return types


class BagReader:
    """`with BagReader(path) as bag:` then `bag.summary`, `bag.image_topic()`, `bag.messages(topics)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._reader = None
        self._recovery_file: Path | None = None
        self._typestore = None
        self.summary: BagSummary | None = None

    def __enter__(self) -> "BagReader":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        if not self.path.exists():
            raise BagReadError(self.path, "no such file or directory")
        target = self.path
        if self.path.is_dir() and not (self.path / "metadata.yaml").exists():
            target = _storage_file(self.path)
            if target is None:
                raise BagReadError(self.path, "not a rosbag2 bag: no metadata.yaml and not exactly one .mcap/.db3 file")
        try:
            self._open_indexed(target)
        except Exception as err:  # rosbags raises ReaderError, KeyError, OSError, apsw errors...
            storage_file = target if target.is_file() else (_storage_file(target) if target.is_dir() else None)
            if storage_file is None or storage_file.suffix != ".mcap":
                raise BagReadError(self.path, f"unreadable bag ({_reason(err)})") from err
            self._open_recovery(storage_file, _reason(err))

    def _open_indexed(self, target: Path) -> None:
        from rosbags.rosbag2 import Reader

        reader = Reader(target)
        reader.open()
        self._reader = reader
        self._typestore = _typestore(self.path, _embedded_definitions(reader.connections))
        storage = STORAGE_BY_SUFFIX.get(target.suffix) or _directory_storage(reader)
        counts: dict[tuple[str, str], int] = {}
        for connection in reader.connections:
            key = (connection.topic, connection.msgtype)
            counts[key] = counts.get(key, 0) + connection.msgcount
        count = reader.message_count
        self.summary = BagSummary(
            str(self.path), storage, tuple(BagTopic(n, t, c) for (n, t), c in counts.items()), count,
            reader.start_time / NS_PER_S if count else None, reader.end_time / NS_PER_S if count else None, None)

    def _open_recovery(self, storage_file: Path, why: str) -> None:
        """Survey a damaged mcap file: which topics, how many complete messages, where it stops."""
        state = mcap_recovery.ScanState()
        counts: dict[tuple[str, str], int] = {}
        first = last = None
        try:
            for channel, log_time, _ in mcap_recovery.scan(storage_file, state):
                key = (channel.topic, channel.msgtype)
                counts[key] = counts.get(key, 0) + 1
                first = log_time if first is None else min(first, log_time)
                last = log_time if last is None else max(last, log_time)
            damage = f"index unreadable ({why}) but the data is complete"
        except mcap_recovery.McapTruncated as cut:
            damage = (f"truncated: the file ends inside a record at byte {cut.offset} of "
                      f"{storage_file.stat().st_size}; {state.messages} complete messages before it")
        except (ValueError, OSError) as err:
            raise BagReadError(self.path, f"unreadable bag ({why}; recovery failed: {err})") from err
        if not state.messages:
            raise BagReadError(self.path, f"unreadable bag ({why}); no complete message in {storage_file.name}")
        embedded = _recovered_definitions(state)
        self._typestore = _typestore(self.path, embedded)
        self._recovery_file = storage_file
        self.summary = BagSummary(
            str(self.path), "mcap", tuple(BagTopic(n, t, c) for (n, t), c in counts.items()), state.messages,
            first / NS_PER_S, last / NS_PER_S, damage)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def topics_of_type(self, msgtypes: tuple[str, ...]) -> list[BagTopic]:
        return [t for t in self.summary.topics if t.msgtype in msgtypes and t.count > 0]

    def image_topic(self, requested: str | None = None) -> BagTopic:
        """The camera topic: the requested one, else the only image topic in the bag."""
        images = self.topics_of_type(IMAGE_TYPES)
        if requested:
            topic = self.summary.topic(requested)
            if topic is None:
                raise BagReadError(self.path, f"no topic {requested!r}; image topics: {_names(images)}")
            if topic.msgtype not in IMAGE_TYPES:
                raise BagReadError(self.path, f"topic {requested!r} is {topic.msgtype}, not an image type")
            return topic
        if len(images) == 1:
            return images[0]
        if not images:
            raise BagReadError(self.path, f"no image topic (sensor_msgs Image/CompressedImage); topics: "
                                          f"{_names(self.summary.topics)}")
        raise BagReadError(self.path, f"several image topics, choose one with --image-topic: {_names(images)}")

    def messages(self, topics: list[str]) -> Iterator[BagMessage]:
        """Messages of `topics` in log-time order (file order for a damaged bag)."""
        wanted = set(topics)
        if self._recovery_file is not None:
            yield from self._recovered_messages(wanted)
            return
        connections = [c for c in self._reader.connections if c.topic in wanted]
        count = 0
        try:
            for connection, log_time, raw in self._reader.messages(connections=connections):
                message = self._typestore.deserialize_cdr(raw, connection.msgtype)
                count += 1
                yield BagMessage(connection.topic, connection.msgtype, log_time, message)
        except Exception as err:  # a sqlite3 page or mcap chunk that fails after the index read fine
            raise BagReadError(self.path, f"stopped after {count} messages: {_reason(err)}", partial=True) from err

    def _recovered_messages(self, wanted: set[str]) -> Iterator[BagMessage]:
        state = mcap_recovery.ScanState()
        try:
            for channel, log_time, raw in mcap_recovery.scan(self._recovery_file, state):
                if channel.topic in wanted:
                    message = self._typestore.deserialize_cdr(raw, channel.msgtype)
                    yield BagMessage(channel.topic, channel.msgtype, log_time, message)
        except mcap_recovery.McapTruncated:
            return  # the survey in open() already recorded where and why in summary.damage


def _recovered_definitions(state: mcap_recovery.ScanState) -> dict:
    from rosbags.interfaces import Connection, MessageDefinition, MessageDefinitionFormat

    formats = {"ros2msg": MessageDefinitionFormat.MSG, "ros2idl": MessageDefinitionFormat.IDL}
    connections = [
        Connection(s.id, "", s.name, MessageDefinition(formats[s.encoding], s.data), "", 0, None, None)
        for s in state.schemas.values() if s.encoding in formats]
    return _embedded_definitions(connections)


def _typestore(path: Path, embedded: dict):
    from lionfs_ros.replay.ros_types import typestore_for

    try:
        return typestore_for(embedded)
    except Exception as err:  # a definition rosbags cannot parse or that contradicts itself
        raise BagReadError(path, f"cannot use the bag's message definitions: {_reason(err)}") from err


def _directory_storage(reader) -> str:
    """Storage plugin of a bag directory, from the storage readers rosbags opened for it."""
    plugins = {type(storage).__name__ for storage in getattr(reader.storage, "storages", [])}
    return {"McapReader": "mcap", "Sqlite3Reader": "sqlite3"}.get(plugins.pop(), "unknown") if len(plugins) == 1 \
        else "unknown"


def _names(topics) -> str:
    return ", ".join(f"{t.name} ({t.msgtype})" for t in topics) or "none"


def _reason(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text if len(text) < 300 else text[:300] + "..."
