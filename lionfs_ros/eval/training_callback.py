"""Validation during ``lionfs train``: held-out metrics of ``lionfs eval`` every few steps, the best model kept.

A ``TrainerCallback`` that ``lionfs train`` attaches when the config has a ``validation`` section
(``train.run`` takes callback factories, so ``train/`` needs nothing from ``eval/``). Every
``validation.every_steps`` steps of stage 2, and once at the end, the main process evaluates the model
being trained on the held-out clips with ``evaluate_dataset`` (the metrics and report keys of
``lionfs eval``: ``lm_ppl``, ``time_diff``, ``trigger_f1`` ...), then:

- logs them to TensorBoard as ``validation/<metric>`` (beside the Trainer's ``train/`` curves) and into
  the Trainer's log history (``OUT/train_log.json``);
- saves the model to ``OUT/best_model`` (a LionFS model directory, with ``validation.json``: the step and
  metrics) whenever ``validation.best_metric`` is the best so far; a resumed run keeps the earlier best.

The other processes of a distributed run go on to their next step and wait for the main one there.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import TrainerCallback

from lionfs_ros.train.build import generate_synth
from lionfs_ros.train.config import VALIDATION_METRICS, ValidationSection
from lionfs_ros.train.dataset import truncate
from lionfs_ros.train.run import TrainContext
from lionfs_ros.train.tensorboard import open_writer

from .evaluate import EvalOptions, evaluate_dataset, load_eval_examples

BEST_DIR = "best_model"
BEST_REPORT = "validation.json"
TB_PREFIX = "validation"
LOGGED = ("lm_ppl", "time_diff", "fluency", "lm_correctness", "trigger_precision", "trigger_recall", "trigger_f1")


def validation_examples(section: ValidationSection, data, frame_fps: float) -> list:
    """The held-out clips (a missing synthetic set is generated first, as ``data.generate`` does for training)."""
    root = Path(section.data)
    if section.generate is not None and not (root / "manifest.json").is_file():
        generate_synth((root, section.generate.seed, section.generate.episodes, section.generate))
    examples = load_eval_examples(root, frame_fps, videos=data.videos, features=data.features,
                                  ego_features=data.ego_features, limit=section.max_examples)
    return [truncate(example, section.max_frames) for example in examples]


def is_better(value: float, best: float | None, lower_is_better: bool) -> bool:
    if best is None:
        return True
    return value < best if lower_is_better else value > best


class ValidationCallback(TrainerCallback):
    """``ValidationCallback(context)``: the factory ``run_training(extra_callbacks=...)`` expects."""

    def __init__(self, context: TrainContext):
        if context.config.validation is None:
            raise ValueError("ValidationCallback needs a config with a 'validation' section")
        self.section = context.config.validation
        if self.section.generate is None and not Path(self.section.data).exists():
            raise FileNotFoundError(f"validation.data not found: {self.section.data} (give validation.generate"
                                    " to create a synthetic one)")
        self.data = context.config.data
        self.model = context.model
        self.best_dir = context.out / BEST_DIR
        self.log_dir = context.log_dir
        self.lower_is_better = VALIDATION_METRICS[self.section.best_metric]
        self.examples: list | None = None
        self.writer = None
        self.best: float | None = None
        self.last_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.examples = validation_examples(self.section, self.data, self.model.config.stream.frame_fps)
        if not self.examples:
            raise ValueError(f"validation.data {self.section.data} holds no examples")
        if self.log_dir is not None:
            self.writer = open_writer(self.log_dir, TB_PREFIX)
        saved = self.best_dir / BEST_REPORT
        if saved.is_file():  # a resumed run: the model to beat is the one kept before
            self.best = json.loads(saved.read_text())["metrics"].get(self.section.best_metric)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and state.global_step % self.section.every_steps == 0:
            self.validate(state)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.last_step != state.global_step:
            self.validate(state)
        if self.writer is not None:
            self.writer.close()

    def validate(self, state) -> dict[str, float]:
        model = self.model
        was_training = model.training
        model.eval()
        options = EvalOptions(online=self.section.online, questions=self.section.questions,
                              max_new_tokens=self.section.max_new_tokens)
        try:
            report = evaluate_dataset(model, self.examples, options)
        finally:
            model.train(was_training)
        metrics = {name: float(report[name]) for name in LOGGED if report.get(name) is not None}
        step = state.global_step
        self.last_step = step
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(f"{TB_PREFIX}/{name}", value, step)
            self.writer.flush()
        state.log_history.append({f"{TB_PREFIX}/{name}": value for name, value in metrics.items()} | {"step": step})
        value = metrics.get(self.section.best_metric)
        if value is not None and math.isfinite(value) and is_better(value, self.best, self.lower_is_better):
            self.best = value
            model.save_pretrained(self.best_dir)
            record = {"step": step, "best_metric": self.section.best_metric, "metrics": metrics,
                      "examples": len(self.examples)}
            (self.best_dir / BEST_REPORT).write_text(json.dumps(record, indent=2) + "\n")
        return metrics
