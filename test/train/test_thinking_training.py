"""A tiny training run with the thinking template: the loss falls, the model records its template,
and it evaluates with the slow path on and off (``lionfs eval --slow-path``)."""
import json

import pytest

from lionfs_ros.cli import main
from lionfs_ros.eval.evaluate import EvalOptions, evaluate_dataset, load_eval_examples
from lionfs_ros.model import LionFSModel
from lionfs_ros.train.config import TrainConfig
from lionfs_ros.train.dataset import truncate
from lionfs_ros.train.run import run_training
from lionfs_ros.train.trainer import MODEL_SUBDIR

from train_helpers import tiny_config_dict

STEPS = 16
LOGGED_WINDOW = 4
REQUIRED_LOSS_DROP = 0.8
KEYFRAMES = {"num_keyframes": 2, "history_frames": 4, "grid_sizes": [2, 4], "max_regions": 1, "regions_on": "trigger"}
EVAL_FRAMES = 12  # a short clip keeps the CPU test fast
METRICS = ("lm_ppl", "time_diff", "fluency", "lm_correctness")


@pytest.fixture(scope="module")
def thinking_run(tmp_path_factory, train_dir):
    data = tiny_config_dict(train_dir, max_steps=STEPS)
    data["data"].update(thinking="all", thinking_question="after", keyframes=KEYFRAMES, max_examples=2)
    out = tmp_path_factory.mktemp("thinking_run")
    run_training(TrainConfig.from_dict(data), out)
    return out


def test_training_with_thinking_lowers_the_loss_and_records_the_template(thinking_run):
    state = json.loads(next((thinking_run / "checkpoints").glob("checkpoint-*/trainer_state.json")).read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    first, last = sum(losses[:LOGGED_WINDOW]) / LOGGED_WINDOW, sum(losses[-LOGGED_WINDOW:]) / LOGGED_WINDOW
    assert last < REQUIRED_LOSS_DROP * first, losses
    saved = json.loads((thinking_run / MODEL_SUBDIR / "config.json").read_text())["thinking"]
    assert saved["mode"] == "all" and saved["question"] == "after"  # answers: the question restated after the template
    assert saved["keyframes"]["grid_sizes"] == [2, 4] and saved["keyframes"]["regions_on"] == "trigger"


def test_saved_model_evaluates_with_the_slow_path_on_and_off(thinking_run, val_dir):
    model = LionFSModel.from_pretrained(thinking_run / MODEL_SUBDIR).eval()
    assert model.config.thinking.mode == "all"
    examples = load_eval_examples(val_dir, model.config.stream.frame_fps, limit=1)
    examples = [truncate(examples[0], EVAL_FRAMES)]
    reports = {}
    for setting in ("on", "off", None):
        reports[setting] = evaluate_dataset(model, examples, EvalOptions(max_new_tokens=4, online=False,
                                                                        slow_path=setting))
        for key in METRICS:
            value = reports[setting][key]
            assert value == pytest.approx(value) and value >= 0.0, (setting, key)
    assert reports["on"]["slow_path"]["enabled"] and reports["on"]["slow_path"]["mode"] == "all"
    assert not reports["off"]["slow_path"]["enabled"]
    assert reports[None]["slow_path"] == reports["on"]["slow_path"]  # trained with it: on by default
    assert reports["on"]["slow_path"]["trained_mode"] == "all"
    # Frame decisions never see the template (it lives on forks), so TimeDiff is the same; the answers differ.
    assert reports["on"]["time_diff"] == pytest.approx(reports["off"]["time_diff"], abs=1e-6)
    assert reports["on"]["lm_ppl"] != pytest.approx(reports["off"]["lm_ppl"])


def test_eval_command_takes_slow_path(thinking_run, val_dir, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    code = main(["eval", "--model", str(thinking_run / MODEL_SUBDIR), "--data", str(val_dir), "--json", str(out),
                 "--max-examples", "1", "--device", "cpu", "--no-online", "--slow-path", "off"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["slow_path"] == {"trained_mode": "all", "enabled": False}
    assert "slow path off" in capsys.readouterr().out
