"""The bundled demo model: small enough to ship, loads with no network, is the default of `lionfs eval`,
and beats an untrained model of the same shape on held-out validation episodes by a clear margin."""
import json
import os
import subprocess
import sys

import pytest
import torch

from lionfs_ros.cli import main
from lionfs_ros.data.synth import GeneratorConfig, generate_dataset
from lionfs_ros.eval.evaluate import EvalOptions, evaluate_dataset, load_eval_examples
from lionfs_ros.model import LionFSModel
from lionfs_ros.resources import demo_model_path
from lionfs_ros.train.dataset import truncate

MAX_FILE_BYTES = 16_000_000
MAX_TOTAL_BYTES = 30_000_000
VAL_SEED = 900  # the validation seed of docs/RESULTS.md: never used in training
VAL_EPISODES = 2
# An untrained model speaks at every frame and writes MAX_NEW_TOKENS each time: a short clip keeps the test fast.
COMPARED_EPISODES = 1
COMPARED_FRAMES = 40
MAX_NEW_TOKENS = 16
OFFLINE_CHECK = """
import socket
def refuse(*args, **kwargs):
    raise OSError("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
import torch
from lionfs_ros.model import LionFSModel
from lionfs_ros.resources import demo_model_path
from lionfs_ros.train.dataset import truncate
model = LionFSModel.from_pretrained(demo_model_path()).eval()
ids = model.formatter.system_ids() + model.formatter.stream_open_ids() + model.formatter.frame_ids(after_frame=False)
frames = torch.zeros(1, model.tokens_per_frame, model.hidden_size)
with torch.no_grad():
    out = model.step_ids(ids, frames, model.new_cache())
print("ok", tuple(out.logits.shape))
"""


@pytest.fixture(scope="module")
def val_episodes(tmp_path_factory):
    root = tmp_path_factory.mktemp("val") / "synth_val"
    generate_dataset(root, GeneratorConfig(seed=VAL_SEED, split="val"), num_episodes=VAL_EPISODES)
    return root


def test_demo_model_fits_the_package():
    files = [p for p in demo_model_path().rglob("*") if p.is_file()]
    sizes = {p.name: p.stat().st_size for p in files}
    assert all(size < MAX_FILE_BYTES for size in sizes.values()), sizes
    assert sum(sizes.values()) < MAX_TOTAL_BYTES
    assert {p.suffix for p in files} <= {".json", ".safetensors"}, sizes
    assert (demo_model_path() / "tokenizer" / "tokenizer.json").is_file()
    config = json.loads((demo_model_path() / "config.json").read_text())
    assert config["aggregation"]["mode"] == "router" and config["ego"]["source"] == "tower"
    assert config["dropping"]["mode"] == "mod" and config["dropping"]["beta"] == 0.5
    assert config["llm"]["path"] is None and config["vision"]["path"] is None  # every part inline


def test_demo_model_loads_with_no_network():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home"}
    done = subprocess.run([sys.executable, "-c", OFFLINE_CHECK], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_eval_defaults_to_the_demo_model(val_episodes, tmp_path):
    out = tmp_path / "demo.json"
    assert main(["eval", "--data", str(val_episodes), "--json", str(out), "--max-examples", "1", "--no-online",
                 "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert report["model"] == str(demo_model_path()) and report["lm_ppl"] > 0


def test_demo_model_beats_an_untrained_one(val_episodes):
    trained = LionFSModel.from_pretrained(demo_model_path()).eval()
    torch.manual_seed(0)
    untrained = LionFSModel.from_config(trained.config, tokenizer=trained.tokenizer).eval()
    examples = [truncate(e, COMPARED_FRAMES) for e in load_eval_examples(val_episodes, trained.config.stream.frame_fps,
                                                                        limit=COMPARED_EPISODES)]
    options = EvalOptions(questions=False, max_new_tokens=MAX_NEW_TOKENS)
    ours, fresh = evaluate_dataset(trained, examples, options), evaluate_dataset(untrained, examples, options)
    summary = {k: (round(ours[k], 3), round(fresh[k], 3)) for k in ("lm_ppl", "lm_correctness", "time_diff", "trigger_f1")}
    assert ours["lm_ppl"] < 0.1 * fresh["lm_ppl"], summary
    assert ours["lm_correctness"] > fresh["lm_correctness"] + 0.3, summary
    assert ours["trigger_f1"] > fresh["trigger_f1"] + 0.3, summary
    assert ours["time_diff"] < fresh["time_diff"], summary
