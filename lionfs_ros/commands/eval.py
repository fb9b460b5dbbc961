"""lionfs eval: free-running metrics through the engine (triggers, TimeDiff, texts, QA) and teacher-forced ones, as JSON."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "evaluate a LionFS model on a dataset (default model: the bundled demo model); writes JSON"
DEFAULT_TOLERANCE_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="LionFS model directory or hub id (default: the bundled demo model)")
    parser.add_argument("--data", type=Path, required=True,
                        help="a `lionfs synth` dataset directory, or a narration-stream annotation JSON")
    parser.add_argument("--json", type=Path, required=True, help="where to write the metrics")
    parser.add_argument("--videos", type=Path, help="annotation JSON: directory of <video_uid> video files")
    parser.add_argument("--features", type=Path, help="annotation JSON: directory of <video_uid> feature files")
    parser.add_argument("--ego-features", type=Path, help="annotation JSON: directory of ego feature files")
    parser.add_argument("--max-examples", type=int, help="evaluate only the first N examples")
    parser.add_argument("--max-frames", type=int,
                        help="cut each example to its first N LLM frames and the turns said in them (as training's "
                             "data.max_frames does; for models trained on short clips)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_S,
                        help=f"trigger match window in seconds (default {DEFAULT_TOLERANCE_S})")
    parser.add_argument("--threshold", type=float,
                        help="speak when P(interval) < THRESHOLD (default: the model's stream.interval_threshold)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-online", action="store_true",
                        help="skip the free-running run through the engine (teacher-forced metrics only)")
    parser.add_argument("--no-questions", action="store_true",
                        help="leave the user questions out: the narration stream alone, as a bag of it replays (no QA)")
    parser.add_argument("--params", type=Path,
                        help="a lionfs_node params file: the engine runs its settings (default: the node's defaults)")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the clips (each loads the model)")
    parser.add_argument("--slow-path", choices=("on", "off"), default=None,
                        help="answers after the slow thinker's thinking template (on) or straight (off); default:"
                             " on when the model was trained with the template (config.json thinking.mode)")
    parser.add_argument("--weights", choices=("native", "fp8"), default=None,
                        help="the engine's decoder weights: native (the model's dtype) or fp8 (weight-only FP8, CUDA"
                             " compute capability >= 8.9 with Triton; see lionfs_ros/engine/README.md); default native")


def run(args: argparse.Namespace) -> int:
    import torch

    from lionfs_ros.config import engine_config
    from lionfs_ros.engine import EngineConfigError
    from lionfs_ros.eval.evaluate import EvalOptions, evaluate_dataset, load_eval_examples
    from lionfs_ros.model import LionFSModel
    from lionfs_ros.model.checkpoint import CheckpointError
    from lionfs_ros.model_loading import ready_for_inference
    from lionfs_ros.resources import demo_model_path
    from lionfs_ros.train.dataset import truncate

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_dir = args.model or demo_model_path()
    try:
        model = ready_for_inference(LionFSModel.from_pretrained(model_dir, device=device))
        examples = load_eval_examples(args.data, model.config.stream.frame_fps, videos=args.videos,
                                      features=args.features, ego_features=args.ego_features,
                                      limit=args.max_examples)
        if args.max_frames is not None:
            if args.max_frames < 1:
                raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
            examples = [truncate(example, args.max_frames) for example in examples]
        engine = None if args.params is None else engine_config(node_params(args.params))
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"lionfs eval: error: {err}", file=sys.stderr)
        return 2
    options = EvalOptions(tolerance_s=args.tolerance, threshold=args.threshold, online=not args.no_online,
                          questions=not args.no_questions, slow_path=args.slow_path, engine=engine,
                          weights=args.weights)
    try:
        report = evaluate_dataset(model, examples, options, workers=args.workers, model_dir=model_dir)
    except EngineConfigError as err:
        print(f"lionfs eval: error: the engine cannot run these settings: {err}", file=sys.stderr)
        return 2
    report["model"] = str(model_dir)
    report["data"] = str(args.data)
    report["max_frames"] = args.max_frames
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    triggers = report.get("triggers")
    if triggers is not None:
        qa = report.get("qa", {}).get("all", {}).get("accuracy")
        print(f"lionfs eval: free-running (engine): trigger P/R/F1 {report['trigger_precision']:.3f}/"
              f"{report['trigger_recall']:.3f}/{report['trigger_f1']:.3f}, TimeDiff {_num(triggers['time_diff_s'])} s, "
              f"text exact {triggers['response_text_exact']:.3f}, QA {_num(qa)}")
    print("lionfs eval: teacher-forced: " + ", ".join(
        f"{k} {report[k]:.3f}" for k in ("lm_ppl", "time_diff", "fluency", "lm_correctness")))
    slow = report["slow_path"]
    print(f"lionfs eval: slow path {'on (' + slow['mode'] + ')' if slow['enabled'] else 'off'}"
          f" (model trained with thinking: {slow['trained_mode']})")
    print(f"lionfs eval: wrote {args.json}")
    return 0


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def node_params(path: Path):
    """lionfs_node's parameters from a params file (checked as `lionfs bringup` checks it)."""
    from types import SimpleNamespace

    from lionfs_ros.replay.replay_params import node_params as read

    return read(SimpleNamespace(params_file=path, model=None, device=None, dtype=None, threshold=None))
