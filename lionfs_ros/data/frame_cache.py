"""Pre-extraction for speed: frames resized once (``pixels``), or frozen towers' tokens (``features``).

``pixels``: every example's frames are decoded and resized to the encoders' sizes once, in
worker processes, and stored as uint8 ``.npy`` (memory-mapped by the data loader after).
``features``: when the vision towers are frozen, their frame tokens never change: they are
computed once (batched, on the training device) and stored as safetensors; training then runs
the connectors, router and LLM only.
Entries are keyed by what produced them (recipe, or tower weights); a finished entry is never
rewritten, so an interrupted build resumes and concurrent builders do not clash.
"""
from __future__ import annotations

import hashlib
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .frame_sources import CachedFrames, FrameInputs, cache_dirs
from .frames import FrameRecipe
from .stream_examples import StreamExample

GENERAL_KEY, EGO_KEY = "general", "ego"
FEATURE_SUFFIX = ".features.safetensors"


def _write_pixels(job: tuple) -> str:
    source, recipe, dirs = job
    cached = CachedFrames(*dirs, source.cache_name)
    if not cached.exists():
        cached.write(source.load(recipe))
    return source.cache_name


def build_pixel_cache(examples: list[StreamExample], recipe: FrameRecipe, root: str | Path,
                      workers: int = 1) -> tuple[str, str | None]:
    """Resize every example's frames into per-encoder folders under ``root``; returns them (general, ego)."""
    dirs = cache_dirs(root, recipe)
    sources = {e.source.cache_name: e.source for e in examples}
    todo = [(s, recipe, dirs) for name, s in sources.items() if not CachedFrames(*dirs, name).exists()]
    if todo:
        progress = tqdm(total=len(todo), desc="frame cache", unit="clip")
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for _ in pool.imap_unordered(_write_pixels, todo):
                    progress.update()
        else:
            for job in todo:
                _write_pixels(job)
                progress.update()
        progress.close()
    return dirs


@dataclass
class CachedFeatures:
    """Frozen towers' frame tokens of one clip: general ``[T, n, C]``, ego ``[T*r, n, C']``."""

    directory: str
    name: str

    @property
    def path(self) -> Path:
        return Path(self.directory) / f"{self.name}{FEATURE_SUFFIX}"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self, recipe: FrameRecipe) -> FrameInputs:
        tensors = load_file(str(self.path))
        return FrameInputs(tensors[GENERAL_KEY].float(), tensors[EGO_KEY].float() if EGO_KEY in tensors else None)


def towers_key(model) -> str:
    """A name for the towers' current weights (a feature cache is only valid for them)."""
    digest = hashlib.sha256()
    for module in (model.vision, model.ego):
        if module is None:
            continue
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


@torch.no_grad()
def build_feature_cache(model, examples: list[StreamExample], recipe: FrameRecipe, root: str | Path) -> str:
    """Run the frozen towers over every example once; returns the cache directory."""
    if model.config.vision.trainable or (model.ego is not None and model.config.ego.tower.trainable):
        raise ValueError("feature caching needs frozen vision towers (vision.trainable and ego.tower.trainable false)")
    directory = Path(root) / f"features-{towers_key(model)}"
    directory.mkdir(parents=True, exist_ok=True)
    sources = {e.source.cache_name: e.source for e in examples}
    for name, source in tqdm(sorted(sources.items()), desc="feature cache", unit="clip"):
        entry = CachedFeatures(str(directory), name)
        if entry.exists():
            continue
        inputs = source.load(recipe)
        device = model.device
        tensors = {GENERAL_KEY: model.vision.frame_tokens(recipe.general.normalize(torch.from_numpy(inputs.general).to(device)))}
        if model.ego is not None:
            tensors[EGO_KEY] = model.ego.frame_tokens(recipe.ego.normalize(torch.from_numpy(inputs.ego).to(device)))
        partial = entry.path.with_name(entry.path.name + ".partial")
        save_file({k: v.to(torch.float16).contiguous().cpu() for k, v in tensors.items()}, str(partial))
        partial.replace(entry.path)
    return str(directory)


def load_frames(example: StreamExample, recipe: FrameRecipe, cache: FrameCache | None = None) -> FrameInputs:
    """The example's frames (from the cache when one is given), cut to ``example.num_frames``."""
    source = example.source if cache is None else cache.entry(example)
    inputs = source.load(recipe)
    count = example.num_frames
    ego = None if inputs.ego is None else inputs.ego[: count * recipe.ego_per_frame]
    inputs = FrameInputs(inputs.general[:count], ego)
    if len(inputs.general) != count:
        raise ValueError(f"example {example.example_id}: {len(inputs.general)} frames loaded, {count} expected")
    return inputs


@dataclass(frozen=True)
class FrameCache:
    """A built cache: ``pixels`` entries fall back to the source when missing; ``features`` must be complete."""

    mode: str  # "pixels" | "features"
    directories: tuple[str, ...]  # pixels: (general, ego or None); features: (folder,)

    def entry(self, example: StreamExample):
        name = example.source.cache_name
        if self.mode == "pixels":
            cached = CachedFrames(*self.directories, name)
            return cached if cached.exists() else example.source
        cached = CachedFeatures(self.directories[0], name)
        if not cached.exists():
            raise FileNotFoundError(f"feature cache {self.directories[0]} has no entry for {name}")
        return cached
