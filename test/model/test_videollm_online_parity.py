"""A VideoLLM-online release, converted, decides and answers in our engine as the reference demo does.

Tiny random weights in the exact release layout (a Trainer output dir), the real Llama-3 BPE, 40
frames of three shapes (square at the tower's size, then 640x480, then 480x640: letterboxed as the
reference's ffmpeg does), two questions (one at a frame's time, one between frames). The reference is ``videollm_online_reference``: the
demo loop re-written from its code on HF Llama + peft, independent of our engine.
"""
import json

import numpy as np
import pytest
from transformers import AutoTokenizer, LlamaForCausalLM

from lionfs_ros.cli import main as lionfs
from lionfs_ros.engine import EngineConfig, StreamEngine
from lionfs_ros.engine.slow_thinker import LocalSlowThinker
from lionfs_ros.model import LionFSModel

from tiny_parts import IMAGE_SIZE, random_frames
from videollm_online_reference import INTERVAL, ReferenceDemo
from videollm_online_release import NOT_A_PICKLE, write_llama3_base, write_release_adapter

NUM_FRAMES, FPS = 40, 2.0
INTERVAL_GAIN, EOS_GAIN = -30.0, 0.5  # decisions split about evenly; answers empty, short or cut
ANSWER_BUFFER = 6  # the demo's 100-token buffer, shortened on both sides for test time
QUESTIONS = [(5.0, "What is it?"), (12.25, "Where is it?")]  # at frame 10's time; between frames 24 and 25
P_TOLERANCE = 1e-4
SQUARE_FRAMES = 26  # the questions fall among these; then as many landscape as portrait frames
SHAPES = [(480, 640), (640, 480)]  # (H, W): landscape, portrait
BLOCK = 80  # their content is random 80-pixel blocks, so it survives the downscale


def camera_frames(count: int, seed: int) -> list[np.ndarray]:
    """``count`` uint8 RGB frames: ``SQUARE_FRAMES`` at the tower's size, then landscape ones, then portrait ones."""
    frames = list(random_frames(SQUARE_FRAMES, seed, size=IMAGE_SIZE))
    rng = np.random.default_rng(seed)
    half = (count - SQUARE_FRAMES + 1) // 2
    for i in range(count - SQUARE_FRAMES):
        h, w = SHAPES[i // half]
        blocks = rng.integers(0, 256, size=(h // BLOCK, w // BLOCK, 3), dtype=np.uint8)
        frames.append(np.repeat(np.repeat(blocks, BLOCK, axis=0), BLOCK, axis=1))  # [H, W, 3]
    return frames


class RecordingThinker(LocalSlowThinker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.answers: list[tuple[str | None, list[int], bool]] = []

    def generate(self, request, on_text):
        result = super().generate(request, on_text)
        self.answers.append((request.query, result.token_ids, result.truncated))
        return result


@pytest.fixture(scope="module")
def release(tmp_path_factory, tiny_dirs):
    root = tmp_path_factory.mktemp("videollm_online")
    llm_dir = write_llama3_base(root, interval_id=11, interval_gain=INTERVAL_GAIN, eos_gain=EOS_GAIN)
    write_release_adapter(root / "trainer", LlamaForCausalLM.from_pretrained(llm_dir), vision_width=32)
    return root, llm_dir


def test_converted_release_matches_the_reference_demo(release, tiny_dirs, tmp_path):
    root, llm_dir = release
    out = tmp_path / "converted"
    assert lionfs(["convert", "videollm-online", "--adapter", str(root / "trainer"), "--llm", str(llm_dir),
                   "--vision", tiny_dirs["siglip"], "--out", str(out)]) == 0
    assert (root / "trainer" / "training_args.bin").read_bytes() == NOT_A_PICKLE
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "lionfs" and config["vision"]["resize"] == "letterbox"
    assert config["stream"]["tokenize"] == "rendered" and config["stream"]["commit"] == "generated"

    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    assert tokenizer.convert_tokens_to_ids(INTERVAL) == 11
    frames = camera_frames(NUM_FRAMES, 3)
    times = [i / FPS for i in range(NUM_FRAMES)]
    reference = ReferenceDemo(root / "trainer", llm_dir, tiny_dirs["siglip"], tokenizer, 32, ANSWER_BUFFER)
    expected = reference.run(frames, times, QUESTIONS)

    model = LionFSModel.from_pretrained(out).eval()
    assert model.config.stream.max_new_tokens == 100
    engine_config = EngineConfig(general_fps=FPS, kv_budget_tokens=8000, evict_chunk_tokens=256, position_mode="grow",
                                 backend="dynamic", max_new_tokens=ANSWER_BUFFER)
    thinker = RecordingThinker(model, engine_config)
    engine = StreamEngine(model, engine_config, slow_thinker=thinker)
    for t, text in QUESTIONS:
        engine.ask(text, t)
    decisions = {t: engine.process_frame(rgb, t) for rgb, t in zip(frames, times)}

    # the questions' frames: at 5.0 the reference answers instead of deciding; 12.0 must be silent there
    assert 5.0 not in expected.decisions and expected.decisions[12.0][1] is False
    responds = [d[1] for d in expected.decisions.values()]
    assert 5 < sum(responds) < len(responds) - 5, "the decisions must be mixed to prove anything"
    for t, (p_interval, respond, top) in expected.decisions.items():
        got = decisions[t]
        assert abs(got.p_interval - p_interval) < P_TOLERANCE, (t, got.p_interval, p_interval)
        assert got.next_token == top, t
        # a question due before the next frame is answered after this one (the decision carries it)
        assert got.respond == (respond or got.query is not None), t
    assert decisions[12.0].query == QUESTIONS[1][1] and decisions[5.0].query == QUESTIONS[0][1]

    eos = tokenizer.eos_token_id
    ours = [(query, ids + ([] if truncated else [eos])) for query, ids, truncated in thinker.answers]
    assert ours == expected.answers
    lengths = {len(ids) for _, ids in expected.answers}
    assert 1 in lengths and ANSWER_BUFFER in lengths and len(lengths) > 2  # empty, cut and ended answers
