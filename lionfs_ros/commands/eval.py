"""lionfs eval: teacher-forced stream metrics, online trigger precision/recall/F1 and QA accuracy as JSON."""
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
    parser.add_argument("--no-online", action="store_true", help="skip the free-running trigger replay")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the clips (each loads the model)")
    parser.add_argument("--slow-path", choices=("on", "off"), default=None,
                        help="answers after the slow thinker's thinking template (on) or straight (off); default:"
                             " on when the model was trained with the template (config.json thinking.mode)")


def run(args: argparse.Namespace) -> int:
    import torch

    from lionfs_ros.eval.evaluate import EvalOptions, evaluate_dataset, load_eval_examples
    from lionfs_ros.model import LionFSModel
    from lionfs_ros.model.checkpoint import CheckpointError
    from lionfs_ros.resources import demo_model_path
    from lionfs_ros.train.dataset import truncate

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_dir = args.model or demo_model_path()
    try:
        model = LionFSModel.from_pretrained(model_dir, device=device).eval()
        examples = load_eval_examples(args.data, model.config.stream.frame_fps, videos=args.videos,
                                      features=args.features, ego_features=args.ego_features,
                                      limit=args.max_examples)
        if args.max_frames is not None:
            if args.max_frames < 1:
                raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
            examples = [truncate(example, args.max_frames) for example in examples]
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"lionfs eval: error: {err}", file=sys.stderr)
        return 2
    options = EvalOptions(tolerance_s=args.tolerance, threshold=args.threshold, online=not args.no_online,
                          slow_path=args.slow_path)
    report = evaluate_dataset(model, examples, options, workers=args.workers, model_dir=model_dir)
    report["model"] = str(model_dir)
    report["data"] = str(args.data)
    report["max_frames"] = args.max_frames
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    keys = ("lm_ppl", "time_diff", "fluency", "lm_correctness", "trigger_precision", "trigger_recall", "trigger_f1")
    print("lionfs eval: " + ", ".join(f"{k} {report[k]:.3f}" for k in keys if report.get(k) is not None))
    slow = report["slow_path"]
    print(f"lionfs eval: slow path {'on (' + slow['mode'] + ')' if slow['enabled'] else 'off'}"
          f" (model trained with thinking: {slow['trained_mode']})")
    print(f"lionfs eval: wrote {args.json}")
    return 0
