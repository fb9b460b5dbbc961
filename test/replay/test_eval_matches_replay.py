"""`lionfs eval` and `lionfs replay` run the same stream loop: on one synthetic episode (eval from its
frames embedded in one batch, replay from its bag, frame by frame, asking the bag's questions) the engine
decides the same frames the same way, writes the same narrations and answers, and both score the same QA."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lionfs_ros.cli import main
from lionfs_ros.config import engine_config
from lionfs_ros.data.frame_cache import load_frames
from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.data.synth_streams import synth_examples
from lionfs_ros.eval.evaluate import embed_example
from lionfs_ros.eval.free_running import run_clip
from lionfs_ros.model import LionFSModel
from lionfs_ros.replay.pipeline import ReplaySettings, run_replay
from lionfs_ros.replay.replay_params import node_params
from lionfs_ros.replay.replay_runner import DeterministicRunner

P_INTERVAL_ATOL = 1e-4  # a batch and single frames through the towers differ in the last float bits only
# The untrained tiny model puts P(interval) around 0.24-0.35 on these frames: this threshold makes it
# speak on some and stay silent on others (its own 0.725 would speak on all of them).
THRESHOLD = 0.28


@pytest.fixture
def params(tmp_path, tiny_model) -> Path:
    """The replay tests' params for the tiny model, with a threshold that mixes silence and responses."""
    path = tmp_path / "params.yaml"
    path.write_text(tiny_model[1].read_text() + f"    threshold: {THRESHOLD}\n")
    return path


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_eval_and_replay_write_the_same_answers_at_the_same_frames(tmp_path, synth_dir, synth_bag, tiny_model, params,
                                                                   one_thread):
    model_dir = tiny_model[0]
    common = ["--model", str(model_dir), "--params", str(params), "--device", "cpu"]
    assert main(["eval", "--data", str(synth_dir), "--json", str(tmp_path / "eval.json"), *common]) == 0
    assert main(["replay", str(synth_bag), "--report", str(tmp_path / "replay"), "--no-progress", *common]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    replayed = json.loads((tmp_path / "replay" / "report.json").read_text())
    said = [(round(r["time"], 6), r["text"], r["query"] or "") for r in evaluated["responses"]]  # answers too
    narrated = [r for r in said if not r[2]]
    assert 0 < len(narrated) < replayed["metrics"]["frames"]["processed"], "it speaks on some decided frames, not all"
    assert len(narrated) < len(said), "and answers the episode's questions"
    assert said == [(round(r["trigger_time"], 6), r["text"], r["query"]) for r in replayed["responses"]]
    qa = replayed["metrics"]["qa"]
    assert qa["accuracy"] == evaluated["qa"] and qa["unanswered"] == 0  # every question of the bag asked and answered
    html = (tmp_path / "replay" / "report.html").read_text()
    assert 'id="questions"' in html and all(q["question"] in html for q in qa["questions"])
    assert [q["question"] for q in qa["questions"]] == [t["question"] for t in json.loads(
        (synth_dir / "episodes" / f"{synth_bag.name}.json").read_text())["questions"]]
    assert evaluated["engine"]["kv_budget_tokens"] == 700 and evaluated["engine"]["note"] is None  # the params file's
    triggers = replayed["metrics"]["triggers"]
    assert (evaluated["trigger_precision"], evaluated["trigger_recall"]) == (triggers["precision"], triggers["recall"])


def test_eval_and_replay_decide_every_frame_alike(tmp_path, synth_dir, synth_bag, tiny_model, params, one_thread):
    model_dir = tiny_model[0]
    settings = ReplaySettings(bag=synth_bag, report_dir=tmp_path, model=str(model_dir), params_file=params,
                              device="cpu", progress=False)
    replayed = []

    class Spy(DeterministicRunner):
        def prepare(self, image_msgtype, has_truth):
            super().prepare(image_msgtype, has_truth)
            self.engine.on_decision = replayed.append

    run_replay(settings, Spy)
    model = LionFSModel.from_pretrained(model_dir, device="cpu").eval()
    (example,) = synth_examples(synth_dir, model.config.stream.frame_fps)  # with its questions, as the bag asks them
    recipe = FrameRecipe.for_model(model)
    frames = load_frames(example, recipe)
    evaluated = run_clip(model, engine_config(node_params(settings)), example,
                         embed_example(model, example, recipe, frames), frames.general)
    assert [d.frame_time for d in replayed] == [i / example.frame_fps for i in evaluated.decided]
    assert [d.respond for d in replayed] == [d.respond for d in evaluated.decisions]
    assert [d.action for d in replayed] == [d.action for d in evaluated.decisions]
    torch.testing.assert_close(torch.tensor([d.p_interval for d in replayed]),
                               torch.tensor([d.p_interval for d in evaluated.decisions]), atol=P_INTERVAL_ATOL, rtol=0)
    assert any(d.respond for d in replayed) and not all(d.respond for d in replayed)
