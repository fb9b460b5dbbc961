"""Reading bags: both storage formats, bags from other tools, damaged bags."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from replay_helpers import gradient_frames, write_plain_bag

from lionfs_ros.replay.bag_frames import STAMP_SOURCE_HEADER, STAMP_SOURCE_LOG, FrameStats, iter_frames
from lionfs_ros.replay.bag_reader import BagReader, BagReadError

FPS = 10.0


def _frames(path, topic=None):
    with BagReader(path) as bag:
        stats = FrameStats()
        frames = list(iter_frames(bag, bag.image_topic(topic).name, stats))
        return bag.summary, stats, frames


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_both_storage_formats_as_directory_and_bare_file(tmp_path, storage):
    pixels = gradient_frames(6)
    bag = write_plain_bag(tmp_path / "bag", storage, pixels, FPS)
    summary, stats, frames = _frames(bag)
    assert summary.storage == storage and summary.damage is None
    assert [f.index for f in frames] == list(range(6))
    assert np.array_equal(np.stack([f.rgb for f in frames]), pixels)  # bgr8 on disk, RGB out
    assert stats.stamp_source == STAMP_SOURCE_HEADER
    assert [round(stats.video_time(f.stamp_s), 6) for f in frames] == [round(i / FPS, 6) for i in range(6)]
    (storage_file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    _, _, again = _frames(storage_file)  # the storage file alone, as a user may pass it
    assert len(again) == 6


def test_compressed_images_and_topic_choice(tmp_path):
    bag = write_plain_bag(tmp_path / "bag", "mcap", gradient_frames(4), FPS, topic="/cam/color/image_raw/compressed",
                          compressed=True, extra_topics={"/robot/status": ["ok", "ok"]})
    summary, stats, frames = _frames(bag)  # the only image topic is found without being named
    assert len(frames) == 4 and frames[0].rgb.shape == (48, 64, 3)
    assert summary.topic("/robot/status").count == 2
    with BagReader(bag) as reader:
        with pytest.raises(BagReadError, match="/robot/status.*not an image type"):
            reader.image_topic("/robot/status")
        with pytest.raises(BagReadError, match="no topic '/nope'.*image topics: /cam/color/image_raw/compressed"):
            reader.image_topic("/nope")


def test_several_image_topics_must_be_chosen(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    with Writer(tmp_path / "bag", version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic in ("/left/image_raw", "/right/image_raw"):
            conn = writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=store)
            msg = store.types["sensor_msgs/msg/Image"](
                header=store.types["std_msgs/msg/Header"](stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                                          frame_id="c"),
                height=2, width=2, encoding="mono8", is_bigendian=0, step=2, data=np.zeros(4, np.uint8))
            writer.write(conn, 1, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    with BagReader(tmp_path / "bag") as reader:
        with pytest.raises(BagReadError, match="several image topics.*--image-topic.*/left/image_raw.*/right/image_raw"):
            reader.image_topic()
    _, _, frames = _frames(tmp_path / "bag", "/right/image_raw")
    assert len(frames) == 1


def test_unstamped_driver_falls_back_to_log_times(tmp_path):
    bag = write_plain_bag(tmp_path / "bag", "mcap", gradient_frames(5), FPS, zero_stamps=True)
    _, stats, frames = _frames(bag)
    assert stats.stamp_source == STAMP_SOURCE_LOG
    assert [round(stats.video_time(f.stamp_s), 6) for f in frames] == [round(i / FPS, 6) for i in range(5)]


def truncated_copy(bag, destination, fraction: float):
    shutil.copytree(bag, destination)
    (mcap,) = destination.glob("*.mcap")
    with open(mcap, "r+b") as fh:
        fh.truncate(int(mcap.stat().st_size * fraction))
    return destination


def test_truncated_mcap_reads_up_to_the_cut(tmp_path):
    # 40 frames of 128x128 rgb8 are about 2 MB: two of rosbags' 1 MiB chunks, the first survives the cut.
    pixels = gradient_frames(40, 128, 128)
    bag = write_plain_bag(tmp_path / "bag", "mcap", pixels, FPS)
    summary, stats, frames = _frames(truncated_copy(bag, tmp_path / "damaged", 0.75))
    assert summary.damage.startswith("truncated: the file ends inside a record at byte")
    assert 0 < len(frames) < 40
    assert np.array_equal(np.stack([f.rgb for f in frames]), pixels[: len(frames)])
    assert stats.stamp_source == STAMP_SOURCE_HEADER


def test_truncated_sqlite3_is_a_clear_error(tmp_path):
    bag = write_plain_bag(tmp_path / "bag", "sqlite3", gradient_frames(40, 128, 128), FPS)
    (db,) = bag.glob("*.db3")
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size // 2)
    with pytest.raises(BagReadError, match="unreadable bag .*malformed"):
        BagReader(bag).open()


@pytest.mark.parametrize("content", [b"", b"not a bag at all", b"\x89MCAP0\r\n" + b"\x00" * 40])
def test_unreadable_storage_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "broken.mcap"
    path.write_bytes(content)
    with pytest.raises(BagReadError, match="broken.mcap: unreadable bag"):
        BagReader(path).open()


def test_not_a_bag(tmp_path):
    with pytest.raises(BagReadError, match="no such file"):
        BagReader(tmp_path / "missing").open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagReadError, match="not a rosbag2 bag"):
        BagReader(tmp_path / "empty").open()
