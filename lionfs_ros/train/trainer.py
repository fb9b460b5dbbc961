"""``LionFSTrainer``: the Hugging Face Trainer, taught how a LionFS model is fed, saved and resumed.

- Batches carry frames as uint8 pixels; they are normalised on the training device (a quarter of
  the host-to-device bytes of float pixels).
- The loss parts (LM, stream, router aux) are logged beside the total.
- Region tags (``data.keyframes.region_tags``) are read and inserted into the forks before the forward
  (``train.region_tags``).
- A checkpoint's weights are a LionFS model directory in ``checkpoint-N/model`` (config.json +
  safetensors + tokenizer + LoRA adapter), loaded back strictly on resume; the Trainer's own
  resume state (optimizer, scheduler, RNG, ``trainer_state.json``) sits beside it as usual.
- Training arguments are saved as JSON, not pickled.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import time

from transformers import Trainer, TrainerCallback
from transformers.integrations import TensorBoardCallback

from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.model.checkpoint import (ADAPTER_DIR, ADAPTER_WEIGHTS_NAME, PEFT_PREFIX, WEIGHTS_NAME,
                                         load_lora_adapter, load_model_weights, read_safetensors, strip_prefix)

from .distributed import from_main_process
from .region_tags import SLOTS_KEY, insert_region_tags

MODEL_SUBDIR = "model"
TRAINING_ARGS_JSON = "training_args.json"
LOSS_PARTS = ("lm_loss", "stream_loss", "router_aux_loss")


def warmup_cosine(step: int, steps: int, warmup: int) -> float:
    """The learning-rate multiplier of the stages that run their own loop (frame pretraining, the fork stage):
    linear from 1 / ``warmup`` to 1 over ``warmup`` steps, then a cosine to 0 at ``steps``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def prepare_model_inputs(batch: dict, recipe: FrameRecipe) -> dict:
    """A collated batch -> ``LionFSModel.forward`` keyword arguments (pixels normalised where they are)."""
    inputs = dict(batch)
    pixels = inputs.pop("general_pixels", None)
    if pixels is not None:
        inputs["general"] = recipe.general.normalize(pixels)
    ego_pixels = inputs.pop("ego_pixels", None)
    if ego_pixels is not None:
        inputs["ego"] = recipe.ego.normalize(ego_pixels)
    keyframe_pixels = inputs.pop("keyframe_pixels", None)  # thinking templates' keyframes (general encoder)
    if keyframe_pixels is not None:
        inputs["keyframe_general"] = recipe.general.normalize(keyframe_pixels)
    crop_pixels = inputs.pop("keyframe_crop_pixels", None)  # their box crops (keyframes.box_source: crop)
    if crop_pixels is not None:
        inputs["keyframe_crops"] = recipe.general.normalize(crop_pixels)
    return inputs


class LionFSTensorBoardCallback(TensorBoardCallback):
    """TensorBoard logs in a fixed directory; the LionFS config is written as text (it is no HF config)."""

    def __init__(self, logging_dir: Path, config_json: str):
        super().__init__()
        self.logging_dir = str(logging_dir)
        self.config_json = config_json

    def on_train_begin(self, args, state, control, **kwargs):
        kwargs.pop("model", None)
        super().on_train_begin(args, state, control, **kwargs)
        if self.tb_writer is not None and state.is_world_process_zero:
            self.tb_writer.add_text("lionfs_config", self.config_json)


class StopAfterMinutes(TrainerCallback):
    """Ends training (with the usual final save) once a wall-clock budget is spent: a guard for leased machines.
    The main process's clock decides for all processes (one that stopped alone would leave the others waiting)."""

    def __init__(self, minutes: float):
        self.seconds = minutes * 60.0
        self.start = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if from_main_process(time.monotonic() - self.start > self.seconds):
            control.should_training_stop = True
        return control


class LionFSTrainer(Trainer):
    def __init__(self, *args, recipe: FrameRecipe, **kwargs):
        super().__init__(*args, **kwargs)
        self.recipe = recipe
        self._loss_sums = {name: 0.0 for name in LOSS_PARTS}
        self._loss_count = 0

    # Loss.
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = prepare_model_inputs(inputs, self.recipe)
        if SLOTS_KEY in inputs:  # data.keyframes.region_tags: the crop reader's tags go into the forks first
            with self.accelerator.autocast():
                inputs = insert_region_tags(self.accelerator.unwrap_model(model), inputs)
        outputs = model(**inputs)
        if model.training:
            for name in LOSS_PARTS:
                self._loss_sums[name] = self._loss_sums[name] + getattr(outputs, name).detach().float()
            self._loss_count += 1
        return (outputs.loss, {"logits": outputs.logits}) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._loss_count:
            for name in LOSS_PARTS:
                logs[name] = round(float(self._loss_sums[name]) / self._loss_count, 6)
            self._loss_sums = {name: 0.0 for name in LOSS_PARTS}
            self._loss_count = 0
        super().log(logs, start_time)

    # Saving and resuming.
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = Path(output_dir or self.args.output_dir)
        model = self.accelerator.unwrap_model(self.model)
        model.save_pretrained(output_dir / MODEL_SUBDIR)
        (output_dir / TRAINING_ARGS_JSON).write_text(self.args.to_json_string() + "\n")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model_dir = Path(resume_from_checkpoint) / MODEL_SUBDIR
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        weights = model_dir / WEIGHTS_NAME
        load_model_weights(target, weights)
        if target.config.llm.lora.enabled:
            adapter = model_dir / ADAPTER_DIR / ADAPTER_WEIGHTS_NAME
            load_lora_adapter(target.llm, strip_prefix(read_safetensors(adapter), PEFT_PREFIX, adapter), adapter)


def read_training_args(checkpoint: Path) -> dict:
    """The training arguments a checkpoint was written with."""
    return json.loads((checkpoint / TRAINING_ARGS_JSON).read_text())
