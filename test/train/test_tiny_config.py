"""config/train/tiny.yaml, the quick start, trains end to end through `lionfs train` (reduced: see SHORTER).

The full config takes a few minutes on two cores (docs/TRAINING.md); CI runs the same file with
fewer episodes, frames and steps given by --set, the way the guide shows overrides. What it checks
is what the guide promises: both stages in TensorBoard, validation metrics during stage 2 computed
by `lionfs eval`'s code, the best model kept, the final model loadable.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from lionfs_ros.model import LionFSModel

from train_helpers import tensorboard_tags

TINY = Path(__file__).resolve().parents[2] / "config" / "train" / "tiny.yaml"
STAGE1_STEPS, STAGE2_STEPS, EVERY = 4, 6, 3


def shorter(tmp_path: Path) -> list[str]:
    settings = {
        "data.train": tmp_path / "train", "data.generate.episodes": 3, "data.max_frames": 12,
        "data.cache_dir": tmp_path / "cache", "frame_pretraining.steps": STAGE1_STEPS,
        "frame_pretraining.holdout_clips": 1, "frame_pretraining.eval_steps": 2,
        "training.max_steps": STAGE2_STEPS, "training.logging_steps": 1, "training.save_steps": EVERY,
        "validation.data": tmp_path / "val", "validation.generate.episodes": 1, "validation.every_steps": EVERY,
        "validation.max_examples": 1, "validation.max_frames": 12, "validation.max_new_tokens": 4,
    }
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def test_tiny_config_trains_both_stages_with_validation(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lionfs_ros.cli", "train", "--config", str(TINY), "--out", str(out)]
    done = subprocess.run(command + shorter(tmp_path), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"stage 1 (frame_pretraining.steps): {STAGE1_STEPS} steps" in done.stdout

    scalars = tensorboard_tags(out / "logs")
    assert [step for step, _ in scalars["frame_pretraining/loss"]] == list(range(1, STAGE1_STEPS + 1))
    assert [step for step, _ in scalars["frame_pretraining/held_out/verb"]] == [0, 2, STAGE1_STEPS]
    assert len(scalars["train/loss"]) == STAGE2_STEPS
    for metric in ("lm_ppl", "time_diff", "trigger_f1"):
        assert [step for step, _ in scalars[f"validation/{metric}"]] == [EVERY, 2 * EVERY], metric

    log = json.loads((out / "train_log.json").read_text())
    validations = [entry for entry in log if "validation/lm_ppl" in entry]
    assert [entry["step"] for entry in validations] == [EVERY, 2 * EVERY]
    best = json.loads((out / "best_model" / "validation.json").read_text())
    lowest = min(validations, key=lambda entry: entry["validation/lm_ppl"])
    assert best["step"] == lowest["step"] and best["metrics"]["lm_ppl"] == lowest["validation/lm_ppl"]
    assert 1.0 < best["metrics"]["lm_ppl"] < 1e4 and 0.0 <= best["metrics"]["trigger_f1"] <= 1.0
    LionFSModel.from_pretrained(out / "best_model")
    LionFSModel.from_pretrained(out / "model")


def test_validation_section_errors_name_the_key(tmp_path):
    import pytest

    from lionfs_ros.train.config import TrainConfig, TrainConfigError

    with pytest.raises(TrainConfigError, match="validation.best_metric"):
        TrainConfig.load(TINY, ["validation.best_metric=accuracy"])
    with pytest.raises(TrainConfigError, match="needs validation.online"):
        TrainConfig.load(TINY, ["validation.best_metric=trigger_f1", "validation.online=false"])
    with pytest.raises(TrainConfigError, match="validation.max_frames"):
        TrainConfig.load(TINY, ["validation.max_frames=0"])
    assert TrainConfig.load(TINY, ["validation=null"]).validation is None
