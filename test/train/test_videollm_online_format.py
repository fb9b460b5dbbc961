"""VideoLLM-online's narration-stream annotations (Ego4D / Ego-Exo4D): loader rules, feature files,
video files, and a short training run on each, all on a small fixture written here in that schema."""
import copy
import json

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lionfs_ros.data.frames import FrameRecipe, decode_video
from lionfs_ros.data.stream_examples import to_messages
from lionfs_ros.data.videollm_online import AnnotationError, narration_stream_examples, stream_frames
from lionfs_ros.model import LionFSModel
from lionfs_ros.train.config import TrainConfig
from lionfs_ros.data.frame_cache import load_frames
from lionfs_ros.train.run import run_training

from train_helpers import TINY_MODEL

FPS = 2.0
TOKENS, WIDTH = 5, 16  # a frame's tokens in the fixture features (1 + 2x2, the tiny model's) and their width
VIDEO_FPS, VIDEO_SECONDS = 10, 6
NARRATIONS = {
    "vid_feat": {
        "ann_1": [
            {"time": 0.7, "text": "You pick up the knife."},
            {"time": 1.2, "text": "You pick up the knife."},  # same text again: skipped
            {"time": 2.1, "text": "You cut the onion."},
            {"time": 2.4, "text": "You cut the onion slowly."},  # same frame (ceil to 2.5 s): replaces
            {"time": 4.0, "text": "You put the knife down."},
            {"time": 99.0, "text": "You leave."},  # past the end: clamped to the last frame, then the stream stops
            {"time": 120.0, "text": "You come back."},
        ],
        "ann_2": [],
    },
    "vid_npy": {"ann_3": [{"time": 1.0, "text": "You open the jar."}, {"time": 3.0, "text": "You close the jar."}]},
    "vid_pt": {"ann_4": [{"time": 0.5, "text": "You wave."}, {"time": 1.5, "text": "You nod."}]},
}
FEATURE_FRAMES = 13  # 6 s at 2 fps


@pytest.fixture(scope="module")
def ego4d(tmp_path_factory):
    root = tmp_path_factory.mktemp("ego4d")
    (root / "narration_stream_val.json").write_text(json.dumps(NARRATIONS))
    features = root / "features"
    features.mkdir()
    rng = np.random.default_rng(0)
    save_file({"features": torch.from_numpy(rng.normal(size=(FEATURE_FRAMES, TOKENS, WIDTH)).astype(np.float32))},
              str(features / "vid_feat.safetensors"))
    np.save(features / "vid_npy.npy", rng.normal(size=(FEATURE_FRAMES, TOKENS, WIDTH)).astype(np.float32))
    torch.save(torch.randn(FEATURE_FRAMES, TOKENS, WIDTH), features / "vid_pt.pt")
    videos = root / "videos"
    videos.mkdir()
    annotations = {"vid_video": {"ann_5": [{"time": 1.0, "text": "You wave."}, {"time": 4.5, "text": "You nod."}]}}
    (root / "video_stream.json").write_text(json.dumps(annotations))
    write_video(videos / "vid_video.avi")
    return root


def write_video(path):
    """Native frame k is filled with grey level 4 * k, so a decoded frame tells which one it is."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, (32, 32))
    for k in range(VIDEO_FPS * VIDEO_SECONDS):
        writer.write(np.full((32, 32, 3), 4 * k, np.uint8))
    writer.release()


def test_stream_rules_follow_videollm_online():
    kept = stream_frames(NARRATIONS["vid_feat"]["ann_1"], FPS, FEATURE_FRAMES)
    assert kept == [(2, "You pick up the knife."), (5, "You cut the onion slowly."), (8, "You put the knife down."),
                    (12, "You leave.")]


def test_examples_from_feature_files(ego4d):
    examples = narration_stream_examples(ego4d / "narration_stream_val.json", FPS, features=ego4d / "features")
    assert [e.example_id for e in examples] == ["vid_feat/ann_1", "vid_npy/ann_3", "vid_pt/ann_4"]
    first = examples[0]
    assert first.num_frames == 12 - 2 + 1 and first.meta["start_frame"] == 2
    assert [round(t.time * FPS) for t in first.turns] == [0, 3, 6, 10]
    messages = to_messages(first)
    assert messages[:3] == [{"role": "stream", "num_frames": 1, "learn": False},
                            {"role": "user", "content": first.instruction},
                            {"role": "assistant", "content": "You pick up the knife.", "learn": True}]
    recipe = FrameRecipe.for_model(_general_only_model())
    for example in examples:
        frames = load_frames(example, recipe)
        assert tuple(frames.general.shape) == (example.num_frames, TOKENS, WIDTH)


def test_video_files_are_sampled_at_the_stream_rate(ego4d):
    frames = decode_video(ego4d / "videos" / "vid_video.avi", FPS, start=1, count=4)
    grey = frames[:, 0, 0, 0].astype(int)
    expected = [4 * int(i / FPS * VIDEO_FPS) for i in range(1, 5)]
    assert np.allclose(grey, expected, atol=3), (grey, expected)  # MJPG is lossy by a level or two


def test_bad_annotation_shape_is_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"vid": [{"time": 1, "text": "x"}]}))
    with pytest.raises(AnnotationError, match="annotation_uid"):
        narration_stream_examples(path, FPS, features=tmp_path)


def _general_only_model() -> LionFSModel:
    config = copy.deepcopy(TINY_MODEL)
    config["vision"]["config"]["hidden_size"] = WIDTH
    config["ego"], config["aggregation"] = {"source": "none"}, {"mode": "none"}
    from lionfs_ros.model import LionFSConfig
    from lionfs_ros.model.tokenization import train_byte_bpe_tokenizer

    tokenizer = train_byte_bpe_tokenizer(["You pick up the knife.", "Assistant: User: [ ] ,"], 280)
    return LionFSModel.from_config(LionFSConfig.from_dict(config), tokenizer=tokenizer)


def _config(ego4d, model: dict, **data) -> TrainConfig:
    return TrainConfig.from_dict({
        "model": {"config": model}, "tokenizer": {"train_vocab_size": 280},
        "data": {"format": "videollm_online", **data},
        "training": {"max_steps": 3, "per_device_train_batch_size": 2, "logging_steps": 1, "save_steps": 1000,
                     "report_to": []},
    })


def test_training_on_feature_files(ego4d, tmp_path):
    model = copy.deepcopy(TINY_MODEL)
    model["vision"]["config"]["hidden_size"] = WIDTH
    model["ego"], model["aggregation"] = {"source": "none"}, {"mode": "none"}
    config = _config(ego4d, model, train=str(ego4d / "narration_stream_val.json"), features=str(ego4d / "features"))
    trained = LionFSModel.from_pretrained(run_training(config, tmp_path))
    assert trained.config.vision.config["hidden_size"] == WIDTH


def test_training_on_video_files_with_an_ego_tower(ego4d, tmp_path):
    config = _config(ego4d, copy.deepcopy(TINY_MODEL), train=str(ego4d / "video_stream.json"), videos=str(ego4d / "videos"))
    out = run_training(config, tmp_path)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["global_step"] == 3 and summary["examples"] == 1 and out.is_dir()
