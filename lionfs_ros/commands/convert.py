"""lionfs convert: write a LionFS model directory from a released checkpoint of another layout."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "convert a released checkpoint (videollm-online) into a LionFS model directory"
LAYOUTS = ("videollm-online",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("layout", choices=LAYOUTS, help="videollm-online: a v1+ peft adapter (release or Trainer dir)")
    parser.add_argument("--adapter", required=True,
                        help="the adapter directory (adapter_config.json + adapter_model.safetensors), or a hub id")
    parser.add_argument("--llm", required=True, help="the base LLM (Meta-Llama-3-8B-Instruct): a directory or a hub id")
    parser.add_argument("--vision", required=True, help="the vision tower (siglip-large-patch16-384): a directory or a hub id")
    parser.add_argument("--out", type=Path, required=True, help="the model directory to write")


def run(args: argparse.Namespace) -> int:
    from lionfs_ros.model.checkpoint import CheckpointError
    from lionfs_ros.model.hub import resolve
    from lionfs_ros.model.videollm_online import convert_videollm_online

    try:
        out = convert_videollm_online(resolve(args.adapter), args.llm, args.vision, args.out)
    except (CheckpointError, FileNotFoundError, ValueError, OSError) as err:
        print(f"lionfs convert: error: {err}", file=sys.stderr)
        return 2
    print(f"lionfs convert: model directory written to {out} (base LLM {args.llm}, vision {args.vision})")
    return 0
