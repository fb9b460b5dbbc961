"""Writing a dataset and reading it back; the bag round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lionfs_ros.data.synth import (DatasetError, generate_dataset, generate_episode, iter_dataset, load_episode,
                                   read_manifest)
from lionfs_ros.data.synth.storage import read_frames, write_frames


def test_dataset_round_trip(tmp_path, tiny_config):
    config = tiny_config(seed=11)
    generate_dataset(tmp_path / "ds", config, num_episodes=2)
    manifest = read_manifest(tmp_path / "ds")
    assert manifest["num_episodes"] == 2 and manifest["fps"] == config.fps
    assert (manifest["width"], manifest["height"]) == (config.width, config.height)
    assert manifest["seed"] == 11 and manifest["split"] == "train" and manifest["heldout"] is False
    loaded = list(iter_dataset(tmp_path / "ds"))
    assert [e.episode_id for e in loaded] == ["train_000000", "train_000001"]
    for episode in loaded:
        fresh = generate_episode(config, episode.index)
        assert np.array_equal(episode.frames, fresh.frames)
        assert np.array_equal(episode.timestamps, fresh.timestamps)
        assert episode.narrations == fresh.narrations
        assert episode.questions == fresh.questions
        assert episode.actions == fresh.actions
        assert episode.frame_index(episode.narrations[0].time) == episode.actions[0].end_frame


def test_videollm_online_shaped_files(tmp_path, tiny_config):
    generate_dataset(tmp_path / "ds", tiny_config(seed=2), num_episodes=1)
    streams = json.loads((tmp_path / "ds" / "narration_stream_train.json").read_text())
    (video_uid, by_annotation), = streams.items()
    (narrations,) = by_annotation.values()
    assert video_uid == "train_000000"
    assert all(set(n) >= {"time", "text"} and isinstance(n["time"], float) for n in narrations)
    assert all(n["text"][0].isupper() and n["text"].endswith(".") for n in narrations)
    chats = json.loads((tmp_path / "ds" / "livechat_train.json").read_text())
    roles = [turn["role"] for turn in chats[0]["conversation"]]
    assert roles == ["user", "assistant"] * (len(roles) // 2)


def test_annotations_only_loading(tmp_path, tiny_config):
    generate_dataset(tmp_path / "ds", tiny_config(seed=2), num_episodes=1)
    episode = load_episode(tmp_path / "ds", "train_000000", frames=False)
    assert episode.frames.shape == (0, 64, 64, 3)
    assert len(episode.timestamps) == episode.num_frames > 0


def test_frames_file_is_exact(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 8, 10, 3), dtype=np.uint8)
    stamps = np.arange(3) / 8.0
    write_frames(tmp_path / "f.npz", frames, stamps)
    back, back_stamps = read_frames(tmp_path / "f.npz")
    assert back.dtype == np.uint8 and np.array_equal(back, frames) and np.array_equal(back_stamps, stamps)


def test_refuses_non_empty_output_and_unfinished_dataset(tmp_path, tiny_config):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        generate_dataset(tmp_path / "full", tiny_config(), num_episodes=1)
    with pytest.raises(DatasetError, match="manifest"):
        read_manifest(tmp_path / "full")


def test_bag_round_trip(tmp_path, tiny_config):
    pytest.importorskip("rosbags")
    from lionfs_ros.data.synth.bag import read_episode_bag

    generate_dataset(tmp_path / "ds", tiny_config(seed=6), num_episodes=1, write_bags=True)
    manifest = read_manifest(tmp_path / "ds")
    entry = manifest["episodes"][0]
    episode = load_episode(tmp_path / "ds", entry["episode_id"])
    bag = read_episode_bag(tmp_path / "ds" / entry["bag"])
    assert np.array_equal(bag.frames, episode.frames)
    np.testing.assert_allclose(bag.stamps, episode.timestamps, atol=1e-9)
    assert set(bag.frame_ids) == {"camera"}
    assert bag.ground_truth == [{"time": n.time, "text": n.text, "kind": n.kind} for n in episode.narrations]
    np.testing.assert_allclose(bag.ground_truth_log_times, [n.time for n in episode.narrations], atol=1e-9)
    assert episode.questions, "the seed's episode should ask something"
    assert bag.queries == [{"time": pytest.approx(q.time, abs=1e-9), "text": q.question, "query_id": f"q{i}"}
                           for i, q in enumerate(episode.questions)]  # the UserQuery messages lionfs replay asks
    assert bag.answers == [{"time": q.time, "query_id": f"q{i}", "question": q.question, "answer": q.answer,
                            "kind": q.kind} for i, q in enumerate(episode.questions)]
    assert list((tmp_path / "ds" / entry["bag"]).glob("*.mcap"))
