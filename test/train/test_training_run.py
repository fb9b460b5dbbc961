"""A real HF Trainer run on a tiny model: the loss falls, the run directory is complete, the model
loads back and evaluates, and a resumed run ends where an uninterrupted one does."""
import json

import pytest
import torch
from safetensors.torch import load_file

from lionfs_ros.eval.evaluate import EvalOptions, evaluate_dataset, load_eval_examples
from lionfs_ros.model import LionFSModel
from lionfs_ros.train.run import TrainRunError, run_training
from lionfs_ros.train.trainer import MODEL_SUBDIR

from train_helpers import tiny_config

LOGGED_WINDOW = 5
REQUIRED_LOSS_DROP = 0.7  # mean of the last logged losses must be below 70% of the first ones


def logged_losses(run_dir):
    state = json.loads(next((run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json")).read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_training_lowers_the_loss(trained_run):
    losses = logged_losses(trained_run)
    first = sum(losses[:LOGGED_WINDOW]) / LOGGED_WINDOW
    last = sum(losses[-LOGGED_WINDOW:]) / LOGGED_WINDOW
    assert last < REQUIRED_LOSS_DROP * first, losses


def test_run_directory_holds_model_logs_and_summary(trained_run):
    model_dir = trained_run / MODEL_SUBDIR
    assert (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file()
    assert (model_dir / "tokenizer" / "tokenizer.json").is_file()
    assert not [p for p in model_dir.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    assert list((trained_run / "logs").glob("events.out.tfevents.*")), "no TensorBoard event file"
    summary = json.loads((trained_run / "train_summary.json").read_text())
    assert summary["global_step"] > 0 and summary["parameters"]["trainable"] == summary["parameters"]["total"]
    assert summary["last_logged"]["stream_loss"] > 0 and "router_aux_loss" in summary["last_logged"]


def test_saved_model_loads_and_evaluates(trained_run, val_dir):
    model = LionFSModel.from_pretrained(trained_run / MODEL_SUBDIR).eval()
    stored = load_file(str(trained_run / MODEL_SUBDIR / "model.safetensors"))
    for name, tensor in model.state_dict().items():
        if name in stored:
            torch.testing.assert_close(tensor, stored[name])
    examples = load_eval_examples(val_dir, model.config.stream.frame_fps, limit=1)
    report = evaluate_dataset(model, examples, EvalOptions(max_new_tokens=8))
    for key in ("lm_ppl", "time_diff", "fluency", "lm_correctness", "trigger_precision", "trigger_recall", "trigger_f1"):
        assert report[key] == pytest.approx(report[key]) and report[key] >= 0.0, key  # a number, not NaN
    assert report["qa"]["all"]["count"] > 0


def test_resumed_run_matches_an_uninterrupted_one(tmp_path, train_dir):
    straight = run_training(tiny_config(train_dir, max_steps=6), tmp_path / "straight")
    interrupted = tmp_path / "interrupted"
    run_training(tiny_config(train_dir, max_steps=3, save_steps=3), interrupted)
    (interrupted / MODEL_SUBDIR).rename(tmp_path / "first_half")  # a run killed after its checkpoint has no final model
    with pytest.raises(TrainRunError, match="--resume"):
        run_training(tiny_config(train_dir, max_steps=6), interrupted)
    resumed = run_training(tiny_config(train_dir, max_steps=6), interrupted, resume=True)
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)
    first_half = load_file(str(tmp_path / "first_half" / "model.safetensors"))
    assert any(not torch.equal(first_half[name], b[name]) for name in a)  # the resumed run did train on


def test_resume_without_checkpoint_is_refused(tmp_path, train_dir):
    with pytest.raises(TrainRunError, match="no checkpoint"):
        run_training(tiny_config(train_dir, max_steps=2), tmp_path / "new", resume=True)
