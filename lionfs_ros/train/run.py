"""One training run end to end: config -> examples, tokenizer, model -> HF Trainer -> model directory.

Output directory layout::

    OUT/train_config.yaml        the resolved config (after ``extends`` and overrides)
    OUT/tokenizer/               the run's tokenizer (trained once, reused on resume)
    OUT/checkpoints/checkpoint-N/  model/ (a LionFS model dir) + the Trainer's resume state
    OUT/logs/                    TensorBoard event files
    OUT/frame_cache/             pre-extracted frames or features (when data.frame_cache is set)
    OUT/frame_pretraining/       stage 1, when the config has ``frame_pretraining``: the frame
                                 encoder's weights and summary.json (see ``train.frame_pretraining``)
    OUT/crop_pretraining/        stage 1b, when the config has ``crop_pretraining``: summary.json of
                                 the crop tower's training (see ``train.crop_pretraining``)
    OUT/fork_stage/              stage 3, when the config has ``fork_stage``: summary.json of the LLM's
                                 training on the forks (see ``train.fork_stage``)
    OUT/model/                   the final LionFS model directory (what ``lionfs eval`` loads)
    OUT/train_summary.json       steps, losses, runtime, parameter counts, the command
    OUT/train_log.json           the Trainer's log history (loss per logging step, validation metrics)

Runs unchanged under ``torchrun`` / ``accelerate launch``: the Trainer reads the distributed
environment and both stages are data-parallel; only the main process writes the shared files.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from transformers import TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from lionfs_ros.data.frame_cache import FrameCache, build_feature_cache, build_pixel_cache
from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.model.checkpoint import read_config
from lionfs_ros.model.configuration_lionfs import KeyframeConfig, ThinkingConfig
from lionfs_ros.model.crop_reader import CropReader

from .build import build_model, count_parameters, load_examples, model_config_of, obtain_tokenizer
from .config import TrainConfig
from .dataset import StreamCollator, StreamDataset
from .distributed import check_launch
from .crop_pretraining import CROP_DIR, pretrain_crop_tower
from .fork_stage import FORK_DIR, run_fork_stage
from .frame_pretraining import PRETRAIN_DIR, freeze_towers, pretrain_frame_encoder
from .thinking import ThinkingSampler
from .trainer import MODEL_SUBDIR, LionFSTensorBoardCallback, LionFSTrainer, StopAfterMinutes

CHECKPOINTS_DIR, LOGS_DIR, CACHE_DIR = "checkpoints", "logs", "frame_cache"
CONFIG_COPY, SUMMARY_NAME, LOG_NAME = "train_config.yaml", "train_summary.json", "train_log.json"
TENSORBOARD = "tensorboard"


@dataclass(frozen=True)
class TrainContext:
    """What an extra callback of ``run_training`` may need: the config, the run directory, the model being
    trained (the same object the Trainer steps), its frame recipe and the TensorBoard directory (or None)."""

    config: TrainConfig
    out: Path
    model: torch.nn.Module
    recipe: FrameRecipe
    log_dir: Path | None


class TrainRunError(RuntimeError):
    """The output directory does not fit the request (resume without checkpoints, overwrite without resume)."""


def training_arguments(config: TrainConfig, out: Path) -> TrainingArguments:
    t = config.training
    bf16 = torch.cuda.is_available() if t.bf16 == "auto" else bool(t.bf16)
    settings = dict(
        output_dir=str(out / CHECKPOINTS_DIR),
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler_type,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        dataloader_num_workers=t.dataloader_num_workers,
        dataloader_persistent_workers=t.dataloader_num_workers > 0,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        report_to=[name for name in t.report_to if name != TENSORBOARD] or "none",
        seed=config.seed,
        data_seed=config.seed,
        remove_unused_columns=False,
        ddp_find_unused_parameters=True,  # frozen or unused tower heads (CLIP's post-norm with a CLS token)
        disable_tqdm=False,
    )
    settings.update(t.extra)
    return TrainingArguments(**settings)


def prepare_frame_cache(config: TrainConfig, model, examples, recipe: FrameRecipe, out: Path,
                        args: TrainingArguments) -> FrameCache | None:
    mode = config.data.frame_cache
    if mode == "none":
        return None
    root = Path(config.data.cache_dir or out / CACHE_DIR)
    with args.main_process_first(local=True, desc="frame cache"):
        if mode == "pixels":
            directories = build_pixel_cache(examples, recipe, root, workers=config.data.cache_workers)
        else:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            directories = (build_feature_cache(model.to(device), examples, recipe, root),)
            model.to("cpu")
    return FrameCache(mode, directories)


def thinking_sampler(config: TrainConfig, model, recipe: FrameRecipe) -> ThinkingSampler | None:
    """The sampler of ``data.thinking`` (None for 'none'); the model records the template it is trained with."""
    data = config.data
    if data.thinking == "none":
        return None
    keyframes = KeyframeConfig(**dataclasses.asdict(data.keyframes))
    regions = data.regions or model.config.thinking.regions
    model.config.thinking = ThinkingConfig(mode=data.thinking, keyframes=keyframes, regions=regions,
                                           question=data.thinking_question)

    @torch.no_grad()
    def region_grids(pixels: np.ndarray) -> torch.Tensor:
        return model.patch_grid(recipe.general.normalize(torch.from_numpy(pixels).to(model.device))).float().cpu()

    if keyframes.region_tags and model.crop_reader is None:
        raise TrainRunError("data.keyframes.region_tags needs the model's crop reader (crop_pretraining keeps it)")
    wants_regions = keyframes.regions_on != "none" and keyframes.max_regions > 0
    return ThinkingSampler(model.formatter, model.vision.grid_side, model.config.thinking, data.novelty_cells,
                           region_grids=region_grids if wants_regions and model.config.thinking.regions.features == "tower"
                           else None, processor=recipe.general,  # loader workers never hold the model
                           detail_weight=config.training.detail_answer_weight, extra_questions=data.extra_detail_questions)


def run_training(config: TrainConfig, out: str | Path, resume: bool = False,
                 extra_callbacks: Sequence[Callable[[TrainContext], TrainerCallback]] = ()) -> Path:
    """Train; returns the final model directory ``out/model``.

    ``extra_callbacks``: factories called with the run's ``TrainContext`` once the model and data are
    ready; each returns a ``TrainerCallback`` added to stage 2 (``lionfs train`` adds the validation
    of ``eval.training_callback`` this way, so this package needs nothing from ``eval``)."""
    out = Path(out)
    problem = check_launch(os.environ)
    if problem is not None:
        raise TrainRunError(problem)
    checkpoints = out / CHECKPOINTS_DIR
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume and last is None:
        raise TrainRunError(f"--resume: {checkpoints} holds no checkpoint to resume from")
    if not resume and (checkpoints.is_dir() or (out / MODEL_SUBDIR).exists()):
        raise TrainRunError(f"{out} already holds a training run: pass --resume to continue it, or choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    args = training_arguments(config, out)
    set_seed(config.seed)
    if args.process_index == 0:
        print(describe_plan(config, args), flush=True)

    model_config = model_config_of(config)
    with args.main_process_first(local=True, desc="training data"):
        examples = load_examples(config.data, model_config.stream.frame_fps)
    if not examples:
        raise TrainRunError(f"no training examples in {config.data.train}")
    with args.main_process_first(local=True, desc="tokenizer"):
        tokenizer = obtain_tokenizer(config, model_config, examples, out)
    model = build_model(config, model_config, tokenizer)
    recipe = FrameRecipe.for_model(model)
    cache = prepare_frame_cache(config, model, examples, recipe, out, args)
    stage1 = None
    logs = out / LOGS_DIR if TENSORBOARD in config.training.report_to else None
    extra = [make(TrainContext(config, out, model, recipe, logs)) for make in extra_callbacks]  # fail before stage 1
    if config.frame_pretraining is not None and not resume:  # a resumed run's checkpoint already holds stage 1
        stage1 = pretrain_frame_encoder(model, examples, recipe, config.frame_pretraining, out / PRETRAIN_DIR,
                                        args.device, args.bf16, cache, config.seed, log_dir=logs)
    if config.frame_pretraining is not None and config.frame_pretraining.freeze_towers:
        freeze_towers(model)
    crop_stage = None
    if config.crop_pretraining is not None:  # a resumed run gets the tower here, its weights from the checkpoint
        keyframes = config.data.keyframes
        if not resume:
            crop_stage = pretrain_crop_tower(model, examples, recipe.general, config.crop_pretraining, keyframes.box_grid,
                                             keyframes.crop_margin, keyframes.crop_min, out / CROP_DIR, args.device,
                                             args.bf16, config.seed, keep_reader=keyframes.region_tags,
                                             proposer=(KeyframeConfig(**dataclasses.asdict(keyframes)),
                                                       config.data.regions or model.config.thinking.regions))
        model.add_crop_tower(trainable=config.crop_pretraining.train_in_stream)
        if keyframes.region_tags and resume:  # the reader's classes from the checkpoint, its weights loaded with it
            model.add_crop_reader(CropReader(model.crop_vision.hidden_size, *reader_of(Path(last) / MODEL_SUBDIR)))
    thinking = thinking_sampler(config, model, recipe)
    dataset = StreamDataset(examples, model.formatter, recipe, config.data.max_frames, cache, thinking)
    collator = StreamCollator(pad_id=tokenizer.pad_token_id, ignore_index=model.config.stream.ignore_index)
    callbacks = []
    if logs is not None:
        callbacks.append(LionFSTensorBoardCallback(logs, json.dumps(model.config.to_dict())))
    if config.training.max_minutes is not None:
        callbacks.append(StopAfterMinutes(config.training.max_minutes))
    callbacks += extra
    if args.process_index == 0:
        (out / CONFIG_COPY).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    summary = {"command": " ".join([_program_name()] + sys.argv[1:]), "global_step": 0}
    if config.training.max_steps > 0:
        trainer = LionFSTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                                recipe=recipe, callbacks=callbacks)
        result = trainer.train(resume_from_checkpoint=last if resume else None)
        trainer.save_model(str(out))
        if trainer.is_world_process_zero():
            summary = stream_summary(trainer, result, model, len(examples), stage1, crop_stage)
            (out / LOG_NAME).write_text(json.dumps(trainer.state.log_history) + "\n")
    if config.fork_stage is not None and args.process_index == 0:  # one process: the stage is small
        model.to(args.device)
        summary["fork_stage"] = run_fork_stage(model, dataset, collator, recipe, config.fork_stage, out / FORK_DIR,
                                               args.bf16, config.seed)
        model.save_pretrained(out / MODEL_SUBDIR)
    if args.process_index == 0:
        (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    return out / MODEL_SUBDIR


def reader_of(model_dir: Path) -> tuple[int, dict, dict | None]:
    """The crop reader's pool, classes and part nouns a saved model has (``crop.reader_pool``,
    ``crop.reader_classes``, ``crop.reader_parts``)."""
    crop = read_config(model_dir).crop
    if crop.reader_classes is None:
        raise TrainRunError(f"{model_dir} has no crop reader (crop.reader_classes) to resume region_tags with")
    return crop.reader_pool, crop.reader_classes, crop.reader_parts


def describe_plan(config: TrainConfig, args: TrainingArguments) -> str:
    """One line that says how many processes train and how many steps each stage takes (the global batches)."""
    t, stage1 = config.training, config.frame_pretraining
    world = args.world_size
    lines = [f"lionfs train: {world} process(es) on {args.device.type}"]
    if stage1 is not None:
        lines.append(f"stage 1 (frame_pretraining.steps): {stage1.steps} steps x {stage1.clips_per_batch * world} clips")
    batch = t.per_device_train_batch_size * t.gradient_accumulation_steps * world
    lines.append(f"stage 2 (training.max_steps): {t.max_steps} steps x {batch} examples")
    return "; ".join(lines)


def _program_name() -> str:
    """``lionfs`` when run as the console script or ``python -m lionfs_ros.cli``, else the script's name."""
    name = Path(sys.argv[0]).name
    return "lionfs" if name in ("lionfs", "cli.py") else name


def stream_summary(trainer, result, model, num_examples: int, frame_pretraining: dict | None = None,
                   crop_pretraining: dict | None = None) -> dict:
    losses = [entry for entry in trainer.state.log_history if "loss" in entry]
    summary = {
        "command": " ".join([_program_name()] + sys.argv[1:]),
        "world_size": trainer.args.world_size,
        "device": str(trainer.args.device),
        "bf16": trainer.args.bf16,
        "global_step": trainer.state.global_step,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "examples": num_examples,
        "parameters": count_parameters(model),
        "first_logged": losses[0] if losses else None,
        "last_logged": losses[-1] if losses else None,
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "local_rank": int(os.environ.get("LOCAL_RANK", -1)),
    }
    if frame_pretraining is not None:  # stage 1, trained or reloaded by this run
        summary["frame_pretraining"] = {key: frame_pretraining[key] for key in
                                        ("steps", "runtime_s", "first_loss", "last_loss", "held_out_after")
                                        if key in frame_pretraining}
    if crop_pretraining is not None:
        summary["crop_pretraining"] = {key: crop_pretraining[key] for key in
                                       ("steps", "runtime_s", "first_loss", "last_loss", "held_out_before", "held_out_after")}
    return summary
