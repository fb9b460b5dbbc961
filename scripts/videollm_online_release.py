"""Write a VideoLLM-online v1+ checkpoint in the release layout with random weights, tiny or of real size.

OUT/llm (a Llama with Llama-3's vocabulary and the real Llama-3 tokenizer from ``llama-models``, or
the tokenizer directory given), OUT/siglip (SigLIP-L/16-384's vision tower at 8b), OUT/trainer (the
peft adapter as videollm-online's Trainer leaves it: r=128 at 8b, ``connector`` in modules_to_save,
``training_args.bin``). Built on ``--device`` (cuda for 8b) in the stored dtype (bf16 at 8b: 16 GB
written once, never read back); each part's seconds are printed as one JSON line when it is done.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "model"))
from videollm_online_release import (  # noqa: E402  (the test suite's own release writer)
    ALPHA, R, RELEASE_ALPHA, RELEASE_R, SIGLIP_SIZES, build_llama3_base, write_release_adapter, write_siglip,
)

INTERVAL_ID = 11  # ',' in Llama-3's vocabulary
INTERVAL_GAIN, EOS_GAIN = -30.0, 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", choices=("tiny", "8b"), default="8b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tokenizer", type=Path, help="a Llama-3 tokenizer directory (default: built from llama-models)")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.size == "8b" else torch.float32
    args.out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    start = time.perf_counter()

    def done(part: str) -> None:
        nonlocal start
        times[part] = round(time.perf_counter() - start, 1)
        print(json.dumps({"stage": "release", "part": part, "s": times[part]}), flush=True)
        start = time.perf_counter()

    if args.tokenizer is not None:
        shutil.copytree(args.tokenizer, args.out / "llm", dirs_exist_ok=True)
    llm = build_llama3_base(args.out, INTERVAL_ID, INTERVAL_GAIN, EOS_GAIN, args.size, args.device, dtype,
                            tokenizer_dir=args.tokenizer and args.out / "llm")
    done("build_llm")
    llm.save_pretrained(args.out / "llm")
    done("save_llm")
    write_siglip(args.out / "siglip", args.size, args.device, dtype)
    done("siglip")
    rank, alpha = (RELEASE_R, RELEASE_ALPHA) if args.size == "8b" else (R, ALPHA)
    write_release_adapter(args.out / "trainer", llm, SIGLIP_SIZES[args.size]["hidden_size"], rank=rank, alpha=alpha,
                          dtype=dtype)
    done("adapter")
    print(f"release layout written to {args.out}: llm/ siglip/ trainer/ ({sum(times.values()):.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
