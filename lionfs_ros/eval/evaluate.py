"""``lionfs eval``: one model over a dataset -> one JSON-ready report.

Per example (one clip) the frames are embedded once; then:
- teacher-forced stream metrics (VideoLLM-online's ``stream_evaluate``) on the narration stream
  (narrations only, as in the Ego4D narration benchmark), averaged over examples;
- a free-running replay (``online.replay``): trigger precision / recall / F1 within a tolerance,
  recall per narration kind, and how often a matched response is the exact narration;
- question answering (``qa``) when the example has user questions, accuracy per kind.

Slow path (``EvalOptions.slow_path``: on / off / None = on when the model was trained with the
thinking template): on, answers are written after the engine's thinking template on a fork of the
context (``eval.slow_path``): QA answers always, narrations (teacher-forced LM metrics and the
replay's responses) when the mode is ``all``.

Top-level keys: ``lm_ppl``, ``time_diff`` (s), ``fluency``, ``lm_correctness``, ``frame_diff``,
``trigger_precision``, ``trigger_recall``, ``trigger_f1``, ``trigger_tolerance_s``, then
``triggers`` (details), ``qa``, ``fast_path_ms_per_frame``, ``num_examples``, ``threshold``,
``slow_path`` (whether it was on, its mode and keyframe settings, the model's trained mode).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from lionfs_ros.data.frames import FrameRecipe
from lionfs_ros.model.image_processing import normalize
from lionfs_ros.data.stream_examples import StreamExample, to_messages
from lionfs_ros.eval.stream_metrics import average_metrics, stream_evaluate
from lionfs_ros.data.frame_cache import load_frames

from .online import DEFAULT_MAX_NEW_TOKENS, TriggerCounts, replay, score_replay
from .qa import accuracy_by_kind, answer_questions
from .slow_path import ClipFrames, answer_branch, describe, slow_path_for

SYNTH_MANIFEST = "manifest.json"


@dataclass
class EvalOptions:
    tolerance_s: float = 1.0
    threshold: float | None = None  # None: the model's stream.interval_threshold
    online: bool = True
    questions: bool = True
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    slow_path: str | None = None  # "on" | "off" | None: on when the model was trained with thinking


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
    counts: dict[str, TriggerCounts]
    answers: list
    step_ms: list[float]
    embed_ms: float
    turn_kinds: list[str]  # the kind of each narration turn, in the order the metrics score them


@torch.no_grad()
def evaluate_example(model, example: StreamExample, options: EvalOptions, threshold: float,
                     recipe: FrameRecipe) -> ExampleResult:
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
    metrics = stream_evaluate(model, sample.input_ids, sample.labels, frame_embeds=frame_embeds,
                              threshold=threshold, frame_fps=example.frame_fps,
                              answer_branch=answer_branch(model, sample.input_ids, clip, slow) if thought else None)
    counts, step_ms, answers = {}, [], []
    if options.online:
        result = replay(model, narration, frame_embeds, threshold, options.max_new_tokens, slow, clip)
        step_ms = result.frame_step_ms
        counts = score_replay(narration, result, options.tolerance_s)
    if options.questions:
        answers = answer_questions(model, example, frame_embeds, options.max_new_tokens, slow, clip)
    kinds = [t.kind or "narration" for t in sorted(narration.turns, key=lambda t: t.time)]
    return ExampleResult(metrics, counts, answers, step_ms, embed_ms, kinds)


def _evaluate_shard(job: tuple) -> list[ExampleResult]:
    model_dir, device, examples, options, threshold = job
    from lionfs_ros.model import LionFSModel

    torch.set_num_threads(1)
    model = LionFSModel.from_pretrained(model_dir, device=device).eval()
    recipe = FrameRecipe.for_model(model)
    return [evaluate_example(model, e, options, threshold, recipe) for e in examples]


def evaluate_dataset(model, examples: list[StreamExample], options: EvalOptions | None = None,
                     workers: int = 1, model_dir: str | Path | None = None) -> dict:
    """Evaluate ``model`` on ``examples``; with ``workers > 1`` the clips are split over processes that
    each load ``model_dir`` (the same model) on the model's device."""
    options = options or EvalOptions()
    if not examples:
        raise ValueError("no examples to evaluate")
    threshold = model.config.stream.interval_threshold if options.threshold is None else options.threshold
    if workers > 1:
        if model_dir is None:
            raise ValueError("evaluating with several workers needs model_dir (each worker loads the model)")
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        shards = [examples[i::workers] for i in range(workers)]
        jobs = [(str(model_dir), str(model.device), shard, options, threshold) for shard in shards if shard]
        results = []
        with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
            for part in tqdm(pool.map(_evaluate_shard, jobs), total=len(jobs), desc="eval shards"):
                results += part
    else:
        recipe = FrameRecipe.for_model(model)
        results = [evaluate_example(model, e, options, threshold, recipe) for e in tqdm(examples, desc="eval", unit="clip")]
    report = build_report(results, options, threshold, str(model.device))
    report["slow_path"] = describe(slow_path_for(model, options.slow_path), model)
    return report


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


def build_report(results: list[ExampleResult], options: EvalOptions, threshold: float, device: str) -> dict:
    report = average_metrics([r.metrics for r in results]).to_dict()
    report.update(num_examples=len(results), threshold=threshold, trigger_tolerance_s=options.tolerance_s)
    if options.online:
        counts: dict[str, TriggerCounts] = {}
        for result in results:
            for key, value in result.counts.items():
                counts.setdefault(key, TriggerCounts()).add(value)
        overall = counts["all"].scores()
        report.update(trigger_precision=overall["precision"], trigger_recall=overall["recall"], trigger_f1=overall["f1"])
        report["triggers"] = {
            "predicted": counts["all"].predicted, "truth": counts["all"].truth, "matched": counts["all"].matched,
            "response_text_exact": overall["text_exact"],
            "recall_by_kind": {k.split(":", 1)[1]: v.scores()["recall"] for k, v in sorted(counts.items()) if k != "all"},
        }
        step_ms = [ms for r in results for ms in r.step_ms]
        report["fast_path_ms_per_frame"] = {
            "embed_batched": statistics.median(r.embed_ms for r in results),
            "llm_step_and_decision": statistics.median(step_ms) if step_ms else None,
            "device": device,
        }
    report["lm_correctness_turns_by_kind"] = correctness_by_kind(results)
    answers = [a for r in results for a in r.answers]
    if answers:
        report["qa"] = accuracy_by_kind(answers)
    return report
