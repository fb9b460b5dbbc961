"""What a training run is made of: its examples, its tokenizer and its (fresh or loaded) model."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from tqdm import tqdm

from lionfs_ros.data.stream_examples import StreamExample, turn_texts
from lionfs_ros.model import LionFSConfig, LionFSModel, StreamConfig
from lionfs_ros.model.checkpoint import read_config
from lionfs_ros.model.tokenization import load_tokenizer, prepare_tokenizer, train_byte_bpe_tokenizer

from .config import DataSection, TrainConfig, TrainConfigError

TOKENIZER_DIR = "tokenizer"
SYNTH_MANIFEST = "manifest.json"


def model_config_of(config: TrainConfig) -> LionFSConfig:
    """The LionFS config the run trains (from the preset file, the inline dict or the model to fine-tune)."""
    section = config.model
    if section.preset is not None:
        return LionFSConfig.load(section.preset)
    if section.config is not None:
        return LionFSConfig.from_dict(copy.deepcopy(section.config))
    return read_config(Path(section.init_from))


def load_examples(data: DataSection, frame_fps: float) -> list[StreamExample]:
    """The training examples the data section names (a missing synthetic dataset is generated first)."""
    roots = [data.train] if isinstance(data.train, str) else list(data.train)
    examples: list[StreamExample] = []
    for root in roots:
        examples += _examples_of(data, Path(root), frame_fps)
    return examples[: data.max_examples]


def _examples_of(data: DataSection, root: Path, frame_fps: float) -> list[StreamExample]:
    if data.format == "synth":
        from lionfs_ros.data.synth_streams import DEFAULT_INSTRUCTION, synth_examples

        instruction = data.instruction or DEFAULT_INSTRUCTION
        examples = []
        for shard_root in synth_roots(root, data):
            examples += synth_examples(shard_root, frame_fps, data.questions, instruction, data.max_examples)
        return examples
    from lionfs_ros.data.videollm_online import DEFAULT_INSTRUCTION as EGO4D_INSTRUCTION
    from lionfs_ros.data.videollm_online import narration_stream_examples

    return narration_stream_examples(
        root, frame_fps, videos=data.videos, features=data.features, ego_features=data.ego_features,
        instruction=data.instruction or EGO4D_INSTRUCTION, limit=data.max_examples,
    )


def synth_roots(root: Path, data: DataSection) -> list[Path]:
    """The synthetic dataset directories under ``root`` (one, or one per shard), generated first if missing."""
    spec = data.generate
    if (root / SYNTH_MANIFEST).is_file() or spec is None or spec.shards <= 1:
        if not (root / SYNTH_MANIFEST).is_file():
            if spec is None:
                raise TrainConfigError(f"data.train {root} is no synthetic dataset (no {SYNTH_MANIFEST}); "
                                       "generate it with `lionfs synth` or give data.generate")
            generate_synth((root, spec.seed, spec.episodes, spec))
        return [root]
    per_shard = -(-spec.episodes // spec.shards)
    jobs = [(root / f"shard_{i:02d}", spec.seed + i, min(per_shard, spec.episodes - i * per_shard), spec)
            for i in range(spec.shards) if spec.episodes > i * per_shard]
    missing = [job for job in jobs if not (job[0] / SYNTH_MANIFEST).is_file()]
    if missing:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(len(missing)) as pool:
            list(tqdm(pool.imap_unordered(generate_synth, missing), total=len(missing), desc="synth shards"))
    return [job[0] for job in jobs]


def generate_synth(job: tuple) -> None:
    """``(directory, seed, episodes, spec)``: one ``lionfs synth`` dataset (no bags)."""
    from lionfs_ros.data.synth import GeneratorConfig, generate_dataset

    root, seed, episodes, spec = job
    settings = {"seed": seed, "split": spec.split}
    if spec.actions is not None:
        settings["num_actions"] = spec.actions
    generate_dataset(root, GeneratorConfig(**settings), num_episodes=episodes, write_bags=False)


def tokenizer_corpus(stream: StreamConfig, examples: list[StreamExample]) -> list[str]:
    """Texts as the stream format writes them, so frequent pieces (``\\nAssistant:``) become single tokens."""
    corpus = [stream.system_prompt + stream.system_suffix, stream.stream_open, stream.stream_close, stream.interval_token]
    for text in turn_texts(examples):
        corpus.append(stream.stream_close + stream.user_prefix + text)
        corpus.append(stream.stream_close + stream.assistant_prefix + stream.content_separator + text)
    return corpus


def obtain_tokenizer(config: TrainConfig, model_config: LionFSConfig, examples: list[StreamExample], out: Path):
    """The run's tokenizer; saved to ``out/tokenizer`` the first time and reused from there on resume."""
    saved = out / TOKENIZER_DIR
    if saved.is_dir():
        return load_tokenizer(saved)
    if config.model.init_from is not None:
        tokenizer = load_tokenizer(Path(config.model.init_from) / TOKENIZER_DIR)
    elif config.tokenizer.path is not None:
        tokenizer = load_tokenizer(config.tokenizer.path)
    elif config.tokenizer.train_vocab_size is not None:
        tokenizer = train_byte_bpe_tokenizer(tokenizer_corpus(model_config.stream, examples), config.tokenizer.train_vocab_size)
    else:
        source = model_config.llm.tokenizer_path or model_config.llm.path
        if source is None:
            raise TrainConfigError("an inline llm.config needs tokenizer.path or tokenizer.train_vocab_size")
        tokenizer = load_tokenizer(source)
    prepare_tokenizer(tokenizer, model_config.stream)
    tokenizer.save_pretrained(saved)
    return tokenizer


def build_model(config: TrainConfig, model_config: LionFSConfig, tokenizer) -> LionFSModel:
    """Fp32 on the CPU (the Trainer moves it; bf16 is autocast): fresh parts from the config, or a saved model."""
    if config.model.init_from is not None:
        return LionFSModel.from_pretrained(config.model.init_from, device="cpu", dtype=torch.float32)
    model_config = copy.deepcopy(model_config)
    if model_config.llm.config is not None:
        prepare_tokenizer(tokenizer, model_config.stream)
        model_config.llm.config.update(
            vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
    return LionFSModel.from_config(model_config, tokenizer=tokenizer, device="cpu", dtype=torch.float32)


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    parts = {"total": model, "llm": model.llm, "vision": model.vision}
    if model.ego is not None:
        parts["ego"] = model.ego
    if model.crop_vision is not None:
        parts["crop"] = model.crop_vision
    counts = {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items()}
    counts["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return counts
