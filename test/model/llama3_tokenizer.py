"""The real Llama-3 tokenizer without a hub: Meta's ``tokenizer.model`` from the ``llama-models``
wheel (tiktoken BPE ranks), converted by transformers into a fast tokenizer with the
Llama-3-Instruct special tokens (``<|eot_id|>`` is EOS, as in Meta-Llama-3-8B-Instruct)."""
from __future__ import annotations

import base64
from importlib.resources import files
from pathlib import Path

from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

NUM_SPECIAL = 256
NAMED_SPECIAL = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 6: "<|start_header_id|>", 7: "<|end_header_id|>", 9: "<|eot_id|>"}
BOS, EOS = NAMED_SPECIAL[0], NAMED_SPECIAL[9]


class _RanksFile(TikTokenConverter):
    """transformers' converter, reading the ranks file itself (``token_base64 rank`` per line) instead of through tiktoken."""

    @staticmethod
    def load_tiktoken_bpe(path: str) -> dict[bytes, int]:
        ranks = {}
        for line in Path(path).read_text().splitlines():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        return ranks


def llama3_tokenizer() -> PreTrainedTokenizerFast:
    model_file = files("llama_models") / "llama3" / "tokenizer.model"
    core = _RanksFile(str(model_file)).converted()
    special = [NAMED_SPECIAL.get(i, f"<|reserved_special_token_{i}|>") for i in range(NUM_SPECIAL)]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
    tokenizer.add_special_tokens({"additional_special_tokens": special})  # ids 128000.. in Meta's order
    tokenizer.add_special_tokens({"bos_token": BOS, "eos_token": EOS})
    return tokenizer


def save_llama3_tokenizer(path: Path) -> Path:
    llama3_tokenizer().save_pretrained(path)
    return path
