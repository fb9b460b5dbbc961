"""Stream examples: synthetic episodes as timed conversations, the frames each encoder gets, batching."""
import numpy as np
import pytest
import torch

from lionfs_ros.data.frames import FrameRecipe, ego_indices
from lionfs_ros.data.stream_examples import StreamExample, TimedTurn, to_messages
from lionfs_ros.data.synth import load_episode
from lionfs_ros.data.synth_streams import synth_examples
from lionfs_ros.model import LionFSConfig, LionFSModel
from lionfs_ros.model.tokenization import train_byte_bpe_tokenizer
from lionfs_ros.data.frame_cache import load_frames
from lionfs_ros.train.dataset import StreamCollator, StreamDataset, truncate

from train_helpers import TINY_MODEL

FPS = 2.0


@pytest.fixture(scope="module")
def tiny_model():
    tokenizer = train_byte_bpe_tokenizer(["You pick up the red cup.", "Assistant: User: [ ] , What colour?"], 280)
    return LionFSModel.from_config(LionFSConfig.from_dict(TINY_MODEL), tokenizer=tokenizer).eval()


def test_turns_follow_their_frame_and_user_frames_are_not_learned():
    turns = [TimedTurn(1.2, "assistant", "A."), TimedTurn(2.0, "user", "Q?"), TimedTurn(2.0, "assistant", "B.", answer_of=1)]
    example = StreamExample("x", 8, FPS, turns, source=None, instruction="Narrate.")
    messages = to_messages(example)
    frames = [m["num_frames"] for m in messages if m["role"] == "stream"]
    assert example.frame_of(1.2) == 3 and example.frame_of(2.0) == 4
    assert frames == [1, 3, 1, 3] and sum(frames) == example.num_frames
    assert [m.get("learn") for m in messages if m["role"] == "stream"] == [False, 3, 0, True]


def test_synthetic_episode_becomes_one_example(train_dir):
    example = synth_examples(train_dir, FPS, questions=True, limit=1)[0]
    episode = load_episode(train_dir, example.source.episode_id, frames=False)
    assert example.num_frames == int(episode.duration * FPS) + 1
    assert [t.text for t in example.narrations()] == [n.text for n in episode.narrations]
    answers = [t for t in example.turns if t.answer_of is not None]
    assert len(answers) == len(episode.questions)
    assert all(example.turns[a.answer_of].role == "user" for a in answers)
    assert example.without_questions().turns == example.narrations()


def test_frames_match_the_encoders_own_preprocessing(train_dir, tiny_model):
    example = synth_examples(train_dir, FPS, limit=1)[0]
    recipe = FrameRecipe.for_model(tiny_model)
    frames = load_frames(example, recipe)
    native = load_episode(train_dir, example.source.episode_id).frames
    stride = 4  # 8 fps episodes, 2 fps stream
    assert frames.general.shape[0] == example.num_frames and frames.ego.shape[0] == 4 * example.num_frames
    torch.testing.assert_close(recipe.general.normalize(torch.from_numpy(frames.general)),
                               tiny_model.preprocess(native[::stride][: example.num_frames]))
    torch.testing.assert_close(recipe.ego.normalize(torch.from_numpy(frames.ego)),
                               tiny_model.preprocess(native[ego_indices(example.num_frames, stride, 4, 1)], "ego"))
    assert np.array_equal(recipe.general.resize(native[:1]), frames.general[:1])


def test_ego_frames_are_causal():
    indices = ego_indices(3, stride=4, per_frame=4, ego_stride=1).reshape(3, 4)
    assert indices.tolist() == [[0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8]]


def test_batches_fill_placeholders_in_reading_order(train_dir, tiny_model):
    examples = [truncate(e, 6) for e in synth_examples(train_dir, FPS, limit=2)]
    dataset = StreamDataset(examples, tiny_model.formatter, FrameRecipe.for_model(tiny_model))
    collate = StreamCollator(tiny_model.tokenizer.pad_token_id, tiny_model.config.stream.ignore_index)
    batch = collate([dataset[0], dataset[1]])
    assert batch["general_pixels"].shape[0] == 12 and batch["ego_pixels"].shape[0] == 48
    assert batch["general_pixels"].dtype == torch.uint8
    placeholders = (batch["input_ids"] == tiny_model.token_ids.placeholder).sum(dim=1)
    assert placeholders.tolist() == [6 * tiny_model.tokens_per_frame] * 2
    assert all(e.num_frames == 6 for e in dataset.examples)
