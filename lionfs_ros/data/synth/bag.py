"""Write an episode as a rosbag2 (mcap) with the `rosbags` library, and read one back.

Topics: the camera stream as sensor_msgs/msg/Image (rgb8) and the ground-truth narrations as
std_msgs/msg/String carrying one JSON object each, at the narration's time. With questions, the user's
questions as lionfs_ros/msg/UserQuery on the node's query topic (header stamp: the question's time; what
`lionfs replay` asks), and their true answers as String JSON `{time, query_id, question, answer, kind}` on a
ground-truth topic of their own. Stamps are the frame times in seconds from the start of the episode (replay
with use_sim_time).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The questions' topics and type, as `lionfs replay` reads them.
from lionfs_ros.replay.questions import (DEFAULT_ANSWERS_TOPIC as ANSWERS_TOPIC, DEFAULT_QUERY_TOPIC as QUERY_TOPIC,
                                         QUERY_TYPE)

IMAGE_TOPIC = "/camera/image_raw"
GROUND_TRUTH_TOPIC = "/lionfs/ground_truth"
FRAME_ID = "camera"
IMAGE_TYPE = "sensor_msgs/msg/Image"
STRING_TYPE = "std_msgs/msg/String"
ENCODING = "rgb8"
BAG_VERSION = 9  # the newest rosbag2 metadata version rosbags writes; Jazzy and Kilted read it
NANOSECONDS = 1_000_000_000


@dataclass(frozen=True)
class BagContents:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    stamps: np.ndarray  # float64 [T] seconds, from each Image header
    frame_ids: list[str]
    ground_truth: list[dict]  # decoded JSON of each String, in bag order
    ground_truth_log_times: np.ndarray  # float64 seconds, the bag's receive times of the ground truth
    queries: list[dict]  # {"time", "text", "query_id"} of each UserQuery, in bag order (time: its header stamp)
    answers: list[dict]  # decoded JSON of each true answer


def _typestore():
    # Imported here so the generator works without rosbags when no bag is requested: ROS 2 Kilted's messages
    # (Jazzy's for rosbags releases that predate Kilted: Image and String are the same) and lionfs_ros's own.
    from lionfs_ros.replay.ros_types import default_typestore

    return default_typestore()


def _split_time(seconds: float) -> tuple[int, int]:
    total = int(round(seconds * NANOSECONDS))
    return total // NANOSECONDS, total % NANOSECONDS


def _stamp_ns(seconds: float) -> int:
    return int(round(seconds * NANOSECONDS))


def write_episode_bag(path: Path, frames: np.ndarray, timestamps: np.ndarray, narrations: list[dict],
                      questions: list[dict] = ()) -> Path:
    """Write one bag directory at `path` (it must not exist yet). `questions`: `{time, query_id, question, answer,
    kind}` each, asked on QUERY_TOPIC and answered on ANSWERS_TOPIC."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    typestore = _typestore()
    types = typestore.types
    image_cls, header_cls, time_cls = (types[IMAGE_TYPE], types["std_msgs/msg/Header"],
                                       types["builtin_interfaces/msg/Time"])
    string_cls, query_cls = types[STRING_TYPE], types[QUERY_TYPE]
    path.parent.mkdir(parents=True, exist_ok=True)
    messages: list[tuple[int, int, str, object]] = []  # (time ns, order, topic, message)
    height, width = frames.shape[1:3]
    for frame, seconds in zip(frames, timestamps, strict=True):
        header = header_cls(stamp=time_cls(*_split_time(float(seconds))), frame_id=FRAME_ID)
        message = image_cls(header=header, height=height, width=width, encoding=ENCODING, is_bigendian=0,
                            step=width * 3, data=np.ascontiguousarray(frame).reshape(-1))
        messages.append((_stamp_ns(float(seconds)), 0, IMAGE_TOPIC, message))
    for narration in narrations:
        message = string_cls(data=json.dumps(narration, ensure_ascii=False))
        # order 1: a narration follows the frame that shows the completed action
        messages.append((_stamp_ns(float(narration["time"])), 1, GROUND_TRUTH_TOPIC, message))
    for question in questions:
        seconds = float(question["time"])
        header = header_cls(stamp=time_cls(*_split_time(seconds)), frame_id="")
        asked = query_cls(header=header, stream_id="", text=question["question"], query_id=question["query_id"])
        messages.append((_stamp_ns(seconds), 1, QUERY_TOPIC, asked))
        answer = string_cls(data=json.dumps(question, ensure_ascii=False))
        messages.append((_stamp_ns(seconds), 2, ANSWERS_TOPIC, answer))
    messages.sort(key=lambda item: (item[0], item[1]))
    msgtypes = {IMAGE_TOPIC: IMAGE_TYPE, GROUND_TRUTH_TOPIC: STRING_TYPE}
    if questions:
        msgtypes.update({QUERY_TOPIC: QUERY_TYPE, ANSWERS_TOPIC: STRING_TYPE})
    with Writer(path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {topic: writer.add_connection(topic, msgtype, typestore=typestore)
                       for topic, msgtype in msgtypes.items()}
        for time_ns, _, topic, message in messages:
            writer.write(connections[topic], time_ns, typestore.serialize_cdr(message, msgtypes[topic]))
    return path


def read_episode_bag(path: Path) -> BagContents:
    """Read back what write_episode_bag wrote."""
    from rosbags.rosbag2 import Reader

    typestore = _typestore()
    frames, stamps, frame_ids, truth, truth_times, queries, answers = [], [], [], [], [], [], []
    with Reader(path) as reader:
        for connection, time_ns, raw in reader.messages():
            message = typestore.deserialize_cdr(raw, connection.msgtype)
            if connection.topic == IMAGE_TOPIC:
                if message.encoding != ENCODING:
                    raise ValueError(f"{path}: image encoding {message.encoding!r}, expected {ENCODING!r}")
                frames.append(np.asarray(message.data, np.uint8).reshape(message.height, message.width, 3))
                stamps.append(message.header.stamp.sec + message.header.stamp.nanosec / NANOSECONDS)
                frame_ids.append(message.header.frame_id)
            elif connection.topic == GROUND_TRUTH_TOPIC:
                truth.append(json.loads(message.data))
                truth_times.append(time_ns / NANOSECONDS)
            elif connection.topic == QUERY_TOPIC:
                stamp = message.header.stamp
                queries.append({"time": stamp.sec + stamp.nanosec / NANOSECONDS, "text": message.text,
                                "query_id": message.query_id})
            elif connection.topic == ANSWERS_TOPIC:
                answers.append(json.loads(message.data))
    return BagContents(np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8),
                       np.asarray(stamps, np.float64), frame_ids, truth, np.asarray(truth_times, np.float64),
                       queries, answers)
