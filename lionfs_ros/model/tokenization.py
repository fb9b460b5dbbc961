"""Tokenizer handling: the frame placeholder, the interval token, EOS; a small BPE trainer.

No token id is hard-coded anywhere: every id comes from the tokenizer and the stream config.
The placeholder is added as a special token when the tokenizer lacks it; its id may lie past
the LLM's vocabulary (VideoLLM-online's layout): placeholder positions are never embedded, their
embeddings come from the frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AddedToken, AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .configuration_lionfs import StreamConfig

TINY_BOS, TINY_EOS, TINY_PAD = "<s>", "</s>", "<pad>"


@dataclass(frozen=True)
class StreamTokenIds:
    placeholder: int
    interval: int
    eos: int
    bos: int | None


def single_token_id(tokenizer: PreTrainedTokenizerBase, text: str, what: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{what} {text!r} must be a single token of this tokenizer, it encodes to {ids}")
    return ids[0]


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, stream: StreamConfig) -> StreamTokenIds:
    """Add the frame placeholder if missing, check the interval and EOS tokens; return their ids."""
    if stream.placeholder_token not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(stream.placeholder_token, special=True, normalized=False)], special_tokens=True)
    placeholder = tokenizer.convert_tokens_to_ids(stream.placeholder_token)
    interval = single_token_id(tokenizer, stream.interval_token, "stream.interval_token")
    eos_token = stream.eos_token or tokenizer.eos_token
    if eos_token is None or eos_token not in tokenizer.get_vocab():
        raise ValueError(f"the tokenizer has no EOS token {eos_token!r}: set stream.eos_token")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = eos_token
    bos = tokenizer.bos_token_id if stream.add_bos else None
    if stream.add_bos and bos is None:
        raise ValueError("stream.add_bos is true but the tokenizer has no BOS token")
    ids = StreamTokenIds(placeholder=placeholder, interval=interval, eos=tokenizer.convert_tokens_to_ids(eos_token), bos=bos)
    if len({ids.placeholder, ids.interval, ids.eos}) != 3:
        raise ValueError(f"placeholder, interval and EOS tokens must differ, got {ids}")
    return ids


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """A tokenizer from a local directory or a ``.gguf`` file (offline, no remote code)."""
    path = Path(path)
    if path.suffix == ".gguf":
        from .gguf_backbone import load_gguf_tokenizer

        return load_gguf_tokenizer(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path}")
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def train_byte_bpe_tokenizer(texts: list[str], vocab_size: int, extra_tokens: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` with BOS/EOS/PAD (for tiny and demo models)."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[TINY_PAD, TINY_BOS, TINY_EOS, *extra_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=TINY_BOS, eos_token=TINY_EOS, pad_token=TINY_PAD)
