"""lionfs replay: play a rosbag through the assistant and write a report (report.json + report.html)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "replay a rosbag2 through the assistant and report triggers, text quality, latency and drops"
MODES = ("deterministic", "live", "recorded")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", nargs="?", type=Path, help="rosbag2 directory, or a .mcap / .db3 file")
    parser.add_argument("--report", type=Path, help="directory for report.json and report.html")
    parser.add_argument("--mode", choices=MODES, default="deterministic",
                        help="deterministic: frames straight through the engine, no ROS graph, same result every run; "
                             "live: play the bag into a running lionfs_node over ROS 2 and record what it publishes; "
                             "recorded: score the assistant messages already in the bag (default: deterministic)")
    parser.add_argument("--model", help="model directory (default: the params file's, else the bundled demo model)")
    parser.add_argument("--params", type=Path, help="lionfs_node params file (ROS 2 YAML); the engine in deterministic "
                                                    "mode and the node in live mode run with it")
    parser.add_argument("--image-topic", help="camera topic in the bag (default: the only image topic)")
    truth = parser.add_mutually_exclusive_group()
    truth.add_argument("--truth", type=Path, help="sidecar ground truth JSON (narration stream, episode file, or a "
                                                  "list of {time, text}; times in seconds from the first frame)")
    truth.add_argument("--truth-topic", help="std_msgs/String narration topic in the bag "
                                             "(default: /lionfs/ground_truth when present)")
    parser.add_argument("--truth-video", help="which video of a multi-video truth file (default: the bag's name)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="seconds a response may be before or after its true narration and still count "
                             "(default: 1.0)")
    parser.add_argument("--rate", type=float, default=1.0, help="live mode: playback speed factor (default: 1)")
    parser.add_argument("--threshold", type=float, help="speak when P(frame-interval token) falls below this "
                                                        "(default: the params file's, else the node's)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: the params file's, else auto)")
    parser.add_argument("--dtype", help="auto, float32, bfloat16, float16 (default: the params file's, else auto)")
    live = parser.add_argument_group("live mode")
    live.add_argument("--startup-timeout", type=float, default=120.0,
                      help="seconds to wait for lionfs_node to load the model and subscribe (default: 120)")
    live.add_argument("--drain", type=float, default=30.0,
                      help="seconds to wait after the last frame for answers still being written (default: 30)")
    live.add_argument("--attach", metavar="NAMESPACE",
                      help="use an already running lionfs_node in NAMESPACE instead of starting one "
                           "(it must run with use_sim_time; frames go to NAMESPACE/camera/image_raw, the "
                           "camera topic of `lionfs bringup --namespace NAMESPACE`)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"),
                        help="print two reports (report.json or their directories) side by side and exit")


def _fail(message: str, code: int) -> int:
    print(f"lionfs replay: error: {message}", file=sys.stderr)
    return code


def _check(args: argparse.Namespace) -> str | None:
    if args.bag is None:
        return "give a BAG to replay (or --compare A B)"
    if args.report is None:
        return "--report DIR is required"
    if args.report.exists() and not args.report.is_dir():
        return f"--report {args.report} exists and is not a directory"
    if args.rate <= 0:
        return f"--rate must be > 0, got {args.rate}"
    if args.tolerance is not None and args.tolerance < 0:
        return f"--tolerance must be >= 0, got {args.tolerance}"
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        return f"--threshold must be in [0, 1], got {args.threshold}"
    return None


def run(args: argparse.Namespace) -> int:
    from lionfs_ros.replay.pipeline import EXIT_UNUSABLE

    if args.compare:
        from lionfs_ros.replay.compare import compare_reports
        from lionfs_ros.replay.report_json import ReportFormatError

        try:
            print(compare_reports(*args.compare))
        except ReportFormatError as err:
            return _fail(str(err), EXIT_UNUSABLE)
        return 0
    problem = _check(args)
    if problem:
        return _fail(problem, EXIT_UNUSABLE)
    return _replay(args)


def _replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lionfs_ros.config import ConfigError
    from lionfs_ros.replay.bag_reader import BagReadError
    from lionfs_ros.replay.pipeline import (DEFAULT_TOLERANCE_S, EXIT_UNUSABLE, ReplaySettings, run_replay,
                                        unreadable_bag_report)
    from lionfs_ros.replay.report_html import write_html
    from lionfs_ros.replay.runners import RunnerFailed, RunnerUnavailable, make_runner
    from lionfs_ros.replay.truth import TruthError

    settings = ReplaySettings(
        bag=args.bag, report_dir=args.report, mode=args.mode, image_topic=args.image_topic, truth_file=args.truth,
        truth_topic=args.truth_topic, truth_video=args.truth_video,
        tolerance_s=DEFAULT_TOLERANCE_S if args.tolerance is None else args.tolerance, rate=args.rate,
        params_file=args.params, model=args.model, device=args.device, dtype=args.dtype, threshold=args.threshold,
        progress=not args.no_progress,
        live={"startup_timeout_s": args.startup_timeout, "drain_s": args.drain, "attach_namespace": args.attach})

    def progress(total: int):
        return tqdm(total=total, desc=f"replay ({args.mode})", unit="frame", disable=args.no_progress,
                    file=sys.stderr, dynamic_ncols=True)

    try:
        outcome = run_replay(settings, make_runner, progress)
    except BagReadError as err:
        report = unreadable_bag_report(settings, err)
        report.write(args.report)
        write_html(report.to_dict(), {}, args.report)
        return _fail(f"{err} (report of the failure in {args.report})", EXIT_UNUSABLE)
    except (TruthError, RunnerUnavailable, RunnerFailed, ConfigError) as err:
        return _fail(str(err), EXIT_UNUSABLE)
    report = outcome.report.to_dict()
    json_path = outcome.report.write(args.report)
    html_path = write_html(report, outcome.thumbnails, args.report)
    _print_summary(report, json_path, html_path)
    if outcome.error:
        print(f"lionfs replay: error: {outcome.error}; partial report written", file=sys.stderr)
    return outcome.exit_code


def _print_summary(report: dict, json_path: Path, html_path: Path) -> None:
    metrics = report["metrics"]
    triggers = metrics.get("triggers")
    latency = metrics["latency"]["end_to_end"]
    parts = [f"{report['frames']['decoded']} frames", f"{len(report['responses'])} responses"]
    if triggers:
        chrf = (metrics.get("text") or {}).get("chrf")
        text = "text not scored" if chrf is None else f"their text chrF {chrf:.1f}"
        parts.append(f"truth {triggers['num_truth']}, {triggers['matched']} timed at a true narration ({text})")
        if triggers["f1"] is not None:
            parts.append(f"F1 {triggers['f1']:.3f}")
        if triggers["time_diff_s"] is not None:
            parts.append(f"TimeDiff {triggers['time_diff_s']:.2f} s")
    else:
        parts.append("no ground truth")
    qa = metrics.get("qa")
    if qa:
        every = qa["accuracy"]["all"]
        parts.append(f"QA {every['accuracy']:.3f} of {every['count']} question(s) ({qa['unanswered']} unanswered)")
    if latency["count"]:
        parts.append(f"latency p50 {latency['p50_s'] * 1000:.0f} ms, p99 {latency['p99_s'] * 1000:.0f} ms")
    dropped = metrics["frames"].get("dropped_total")
    if dropped is not None:
        parts.append(f"dropped {dropped}")
    print(f"lionfs replay ({report['mode']}): " + "; ".join(parts))
    print(f"  report: {json_path}\n  html:   {html_path}")
