"""``lionfs eval``: one model over a dataset -> one JSON-ready report.

Per example (one clip) the frames are embedded once, in a batch; then:
- **free-running** (the headline): the clip runs through ``StreamEngine`` with lionfs_node's
  settings (``free_running``: rate gate, decision rule, KV budget, trigger policy, answer commit;
  the model hears its own answers), its questions asked at their times: trigger precision / recall
  / F1 and TimeDiff against the true narrations within a tolerance, recall per narration kind, the
  text scores of matched responses, and QA accuracy per kind;
- **teacher-forced**, beside it: VideoLLM-online's ``stream_evaluate`` on the narration stream
  (narrations only, as in the Ego4D narration benchmark), averaged over examples, and QA with the
  true conversation before each question (``qa``).

The engine's settings are lionfs_node's defaults (``lionfs_ros.config.engine_config``) or a
lionfs_node params file's (``EvalOptions.engine``); ``--threshold`` and ``--slow-path`` override.
A model whose positions cannot hold the node's default KV budget gets the largest budget it can
hold (reported in ``engine``), as a params file for it would say.

Slow path (``EvalOptions.slow_path``: on / off / None = as the model was trained): the engine's
``slow_path`` setting; the teacher-forced parts write answers after the engine's thinking template
on a fork of the context (``eval.slow_path``): QA answers always, narrations when the mode is ``all``.

Top-level keys: ``trigger_precision``, ``trigger_recall``, ``trigger_f1`` (free-running), ``triggers``
(their details: ``time_diff_s``, ``text``, ``recall_by_kind``, ...), ``qa`` (free-running),
``lm_ppl``, ``time_diff`` (s), ``fluency``, ``lm_correctness``, ``frame_diff``, ``lm_correctness_answer``,
``lm_correctness_turns_by_kind`` and ``qa_teacher_forced`` (teacher-forced), ``trigger_tolerance_s``,
``fast_path_ms_per_frame``, ``num_examples``, ``threshold``, ``engine``, ``slow_path``.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from lionfs_ros.data.frame_cache import load_frames
from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.data.stream_examples import StreamExample, to_messages
from lionfs_ros.engine import EngineConfig
from lionfs_ros.eval.stream_metrics import average_metrics, stream_evaluate
from lionfs_ros.model.image_processing import normalize

from .free_running import Answer, TriggerTally, answers_of, run_clip, score_triggers
from .qa import accuracy_by_kind, answer_questions
from .slow_path import ClipFrames, answer_branch, describe, slow_path_for
from .text_scores import score_corpus

SYNTH_MANIFEST = "manifest.json"


@dataclass
class EvalOptions:
    tolerance_s: float = 1.0
    threshold: float | None = None  # None: the engine's (lionfs_node's: the model's stream.interval_threshold)
    online: bool = True  # the free-running run through the engine
    questions: bool = True
    slow_path: str | None = None  # "on" | "off" | None: as the model was trained (the engine's "auto")
    max_new_tokens: int | None = None  # None: the engine's (lionfs_node's max_new_tokens)
    engine: EngineConfig | None = None  # None: lionfs_node's defaults
    weights: str | None = None  # "native" | "fp8" (EngineConfig.weights); None: the engine's


def node_engine_config() -> EngineConfig:
    """The engine settings lionfs_node runs with its default parameters."""
    from lionfs_ros.config import LionFSNodeParams, engine_config

    return engine_config(LionFSNodeParams())


def engine_config_for(model, options: EvalOptions) -> tuple[EngineConfig, str | None]:
    """The engine settings of this evaluation, and a note when the KV budget had to be fitted to the model. A
    ``general_fps`` above the model's ``frame_fps`` is refused: the clips' frames come at the model's rate."""
    from lionfs_ros.engine.bounds import token_bounds
    from lionfs_ros.engine.config import EngineConfigError, check_against_model, fitted_kv_budget

    cfg = options.engine or node_engine_config()
    if options.threshold is not None:
        cfg = dataclasses.replace(cfg, threshold=options.threshold)
    if options.slow_path is not None:
        cfg = dataclasses.replace(cfg, slow_path=options.slow_path)
    if options.max_new_tokens is not None:
        cfg = dataclasses.replace(cfg, max_new_tokens=options.max_new_tokens)
    if options.weights is not None:
        cfg = dataclasses.replace(cfg, weights=options.weights)
    cfg = cfg.validate()
    clip_fps = model.config.stream.frame_fps
    if cfg.general_fps > clip_fps * (1 + FPS_TOLERANCE):
        raise EngineConfigError(
            f"general_fps {cfg.general_fps:g}: lionfs eval hands the engine each clip's frames at the model's frame_fps"
            f" ({clip_fps:g}, embedded once), so it cannot decide more often than that here; use general_fps <="
            f" {clip_fps:g}, or `lionfs replay` on a bag recorded at the camera's rate")
    positions = getattr(model.llm.config, "max_position_embeddings", None)
    resolved = cfg.for_model(model)  # the model's max_new_tokens and thinking settings where cfg leaves them open
    fits = fitted_kv_budget(model, resolved)  # the largest budget (up to the default) the positions allow
    note = None
    if options.engine is None and cfg.kv_budget_tokens is not None and cfg.kv_budget_tokens > fits:
        note = (f"kv_budget_tokens {cfg.kv_budget_tokens} (lionfs_node's default) does not fit this model's"
                f" {positions} positions: {fits} used")
        cfg = dataclasses.replace(cfg, kv_budget_tokens=fits)
    resolved = cfg.for_model(model)
    check_against_model(resolved, token_bounds(model, resolved), positions)  # a params file's, before any clip
    return cfg, note


def load_eval_examples(data: str | Path, frame_fps: float, videos=None, features=None, ego_features=None,
                       limit: int | None = None) -> list[StreamExample]:
    """A synthetic dataset directory (narrations + questions) or a narration-stream annotation file."""
    data = Path(data)
    if data.is_dir() and (data / SYNTH_MANIFEST).is_file():
        from lionfs_ros.data.synth_streams import synth_examples

        return synth_examples(data, frame_fps, questions=True, limit=limit)
    if data.is_file():
        from lionfs_ros.data.videollm_online import narration_stream_examples

        return narration_stream_examples(data, frame_fps, videos=videos, features=features,
                                         ego_features=ego_features, limit=limit)
    raise FileNotFoundError(f"{data} is neither a synthetic dataset directory nor an annotation file")


@torch.no_grad()
def embed_example(model, example: StreamExample, recipe: FrameRecipe, frames=None) -> torch.Tensor:
    """The clip's fused frame tokens ``[T, n, d]``, computed once for every use (``frames``: already loaded)."""
    frames = frames if frames is not None else load_frames(example, recipe)
    device = model.device
    if frames.general_is_features:
        general = frames.general.to(device)
    else:
        general = normalize(torch.from_numpy(frames.general).to(device), recipe.general)
    ego = None
    if frames.ego is not None:
        ego = frames.ego.to(device) if isinstance(frames.ego, torch.Tensor) else normalize(
            torch.from_numpy(frames.ego).to(device), recipe.ego)
    return model.embed_frames(general, ego)


@dataclass
class ExampleResult:
    """What one clip contributes to the report (picklable: worker processes send it back)."""

    metrics: object
    turn_kinds: list[str]  # the kind of each narration turn, in the order the metrics score them
    embed_ms: float
    triggers: TriggerTally | None = None  # free-running
    answers: list[Answer] = field(default_factory=list)  # free-running
    teacher_forced_answers: list[Answer] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    responses: list[dict] = field(default_factory=list)  # the engine's responses: frame, time, text, query


@torch.no_grad()
def evaluate_example(model, example: StreamExample, options: EvalOptions, engine: EngineConfig,
                     recipe: FrameRecipe, backend=None) -> ExampleResult:
    """One clip; ``backend`` (``clip_backend``): the engine backend shared by the clips of one process."""
    slow = slow_path_for(model, options.slow_path)
    start = time.perf_counter()
    frames = load_frames(example, recipe)
    frame_embeds = embed_example(model, example, recipe, frames)
    embed_ms = (time.perf_counter() - start) * 1e3 / example.num_frames
    clip = None
    if slow is not None:
        if frames.general_is_features:
            raise ValueError("the slow path needs the clips' pixels (the template pools the general tower's patch grid)")
        clip = ClipFrames.of(frames.general, frame_embeds)
    narration = example.without_questions()
    sample = model.formatter.encode(to_messages(narration))
    thought = slow is not None and slow.thinks_narrations()
    threshold = engine.threshold if engine.threshold is not None else model.config.stream.interval_threshold
    metrics = stream_evaluate(model, sample.input_ids, sample.labels, frame_embeds=frame_embeds,
                              threshold=threshold, frame_fps=example.frame_fps,
                              answer_branch=answer_branch(model, sample.input_ids, clip, slow) if thought else None)
    kinds = [t.kind or "narration" for t in sorted(narration.turns, key=lambda t: t.time)]
    result = ExampleResult(metrics, kinds, embed_ms)
    if options.online:
        pixels = None if frames.general_is_features else frames.general
        run = run_clip(model, engine, example if options.questions else narration, frame_embeds, pixels, backend)
        result.triggers = score_triggers(example, run, options.tolerance_s)
        result.answers = answers_of(example, run) if options.questions else []
        result.step_ms = run.step_ms
        result.responses = [{"example": example.example_id, **dataclasses.asdict(r)} for r in run.responses]
    if options.questions:
        result.teacher_forced_answers = answer_questions(model, example, frame_embeds, engine.max_new_tokens, slow, clip)
    return result


def _evaluate_shard(job: tuple) -> list[ExampleResult]:
    model_dir, device, examples, options, engine = job
    from lionfs_ros.model import LionFSModel
    from lionfs_ros.model_loading import ready_for_inference

    torch.set_num_threads(1)
    model = ready_for_inference(LionFSModel.from_pretrained(model_dir, device=device))
    recipe, backend = FrameRecipe.for_model(model), clip_backend(model, engine, options)
    return [evaluate_example(model, e, options, engine, recipe, backend) for e in examples]


def clip_backend(model, engine: EngineConfig, options: EvalOptions):
    """One engine backend for every clip of this process (None when clips do not run the engine): on a GPU
    the static backend's buffers and CUDA graphs are made once, not per clip."""
    from lionfs_ros.engine.backends import pick_backend

    return pick_backend(model, engine.validate().for_model(model)) if options.online else None


def evaluate_dataset(model, examples: list[StreamExample], options: EvalOptions | None = None,
                     workers: int = 1, model_dir: str | Path | None = None) -> dict:
    """Evaluate ``model`` on ``examples``; with ``workers > 1`` the clips are split over processes that
    each load ``model_dir`` (the same model) on the model's device."""
    options = options or EvalOptions()
    if not examples:
        raise ValueError("no examples to evaluate")
    engine, note = engine_config_for(model, options)
    if workers > 1:
        if model_dir is None:
            raise ValueError("evaluating with several workers needs model_dir (each worker loads the model)")
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        shards = [examples[i::workers] for i in range(workers)]
        jobs = [(str(model_dir), str(model.device), shard, options, engine) for shard in shards if shard]
        results = []
        with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
            for part in tqdm(pool.map(_evaluate_shard, jobs), total=len(jobs), desc="eval shards"):
                results += part
    else:
        recipe, backend = FrameRecipe.for_model(model), clip_backend(model, engine, options)
        results = [evaluate_example(model, e, options, engine, recipe, backend)
                   for e in tqdm(examples, desc="eval", unit="clip")]
    threshold = engine.threshold if engine.threshold is not None else model.config.stream.interval_threshold
    report = build_report(results, options, threshold, str(model.device))
    report["engine"] = {**{k: getattr(engine, k) for k in ENGINE_REPORT_KEYS}, "threshold": threshold, "note": note}
    report["slow_path"] = describe(slow_path_for(model, options.slow_path), model)
    return report


FPS_TOLERANCE = 1e-6  # relative: a params file's general_fps equal to the model's frame_fps passes
ENGINE_REPORT_KEYS = ("general_fps", "ego_fps", "kv_budget_tokens", "trigger_policy", "max_new_tokens", "slow_path", "weights")


def correctness_by_kind(results: list[ExampleResult]) -> dict[str, dict]:
    """LM-Correctness averaged over narration turns (not clips, unlike ``lm_correctness``), per kind of turn."""
    by_kind: dict[str, list[float]] = {}
    for result in results:
        scored = result.metrics.turn_correctness
        if len(scored) != len(result.turn_kinds):
            raise ValueError(f"{len(scored)} turns scored but {len(result.turn_kinds)} narrations in the clip")
        for kind, value in zip(result.turn_kinds, scored):
            by_kind.setdefault(kind, []).append(value)
            by_kind.setdefault("all", []).append(value)
    return {kind: {"mean": sum(v) / len(v), "turns": len(v)} for kind, v in sorted(by_kind.items())}


def free_running_report(results: list[ExampleResult], device: str) -> dict:
    tally = TriggerTally()
    for result in results:
        tally.add(result.triggers)
    scores = tally.scores()
    text = score_corpus(tally.hypotheses, tally.references).to_dict()
    step_ms = [ms for r in results for ms in r.step_ms]
    return {
        "trigger_precision": scores["precision"], "trigger_recall": scores["recall"], "trigger_f1": scores["f1"],
        "triggers": {
            "predicted": tally.predicted, "truth": tally.truth, "matched": tally.matched,
            "time_diff_s": scores["time_diff"], "mean_offset_s": scores["mean_offset_s"],
            "response_text_exact": text["exact_match"] or 0.0, "text": text,
            "recall_by_kind": {k: tally.matched_by_kind[k] / n for k, n in sorted(tally.truth_by_kind.items())},
        },
        "fast_path_ms_per_frame": {
            "embed_batched": statistics.median(r.embed_ms for r in results),
            "llm_step_and_decision": statistics.median(step_ms) if step_ms else None,
            "device": device,
        },
        "responses": [response for r in results for response in r.responses],
    }


def build_report(results: list[ExampleResult], options: EvalOptions, threshold: float, device: str) -> dict:
    report = {}
    if options.online:
        report.update(free_running_report(results, device))
        answers = [a for r in results for a in r.answers]
        if answers:
            report["qa"] = accuracy_by_kind(answers)
    report.update(average_metrics([r.metrics for r in results]).to_dict())
    report["lm_correctness_turns_by_kind"] = correctness_by_kind(results)
    answers = [a for r in results for a in r.teacher_forced_answers]
    if answers:
        report["qa_teacher_forced"] = accuracy_by_kind(answers)
    report.update(num_examples=len(results), threshold=threshold, trigger_tolerance_s=options.tolerance_s)
    return report
