"""Write a VideoLLM-online v1+ checkpoint in the release layout with random weights, tiny or of real size.

OUT/llm (a Llama with Llama-3's vocabulary and the real Llama-3 tokenizer from ``llama-models``, or
the tokenizer directory given), OUT/siglip (SigLIP-L/16-384's vision tower at 8b), OUT/trainer (the
peft adapter as videollm-online's Trainer leaves it: r=128 at 8b, ``connector`` in modules_to_save,
``training_args.bin``). Built on ``--device`` (cuda for 8b: 16 GB of bf16 weights).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "model"))
from videollm_online_release import (  # noqa: E402  (the test suite's own release writer)
    ALPHA, R, RELEASE_ALPHA, RELEASE_R, SIGLIP_SIZES, write_llama3_base, write_release_adapter, write_siglip,
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
    if args.tokenizer is not None:
        shutil.copytree(args.tokenizer, args.out / "llm", dirs_exist_ok=True)
    llm_dir = write_llama3_base(args.out, INTERVAL_ID, INTERVAL_GAIN, EOS_GAIN, args.size, args.device, dtype,
                                tokenizer_dir=args.tokenizer and args.out / "llm")
    write_siglip(args.out / "siglip", args.size, args.device, dtype)
    from transformers import LlamaForCausalLM

    llm = LlamaForCausalLM.from_pretrained(llm_dir, dtype=dtype, device_map=args.device)
    rank, alpha = (RELEASE_R, RELEASE_ALPHA) if args.size == "8b" else (R, ALPHA)
    write_release_adapter(args.out / "trainer", llm, SIGLIP_SIZES[args.size]["hidden_size"], rank=rank, alpha=alpha,
                          dtype=dtype)
    print(f"release layout written to {args.out}: llm/ siglip/ trainer/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
