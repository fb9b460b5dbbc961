"""Typed configuration of a LION-FS model.

A ``LionFSConfig`` is a tree of dataclasses that round-trips through plain dicts (JSON/YAML).
Every backbone is named either by a local ``path`` (weights are loaded from it) or by an
inline Hugging Face ``config`` dict (fresh weights: tests, training from scratch, and the
form a saved model directory uses, since its weights live in its own safetensors).

``aggregation.mode = "none"`` with ``dropping.mode = "none"`` is VideoLLM-online's design
(one encoder, one connector, a plain decoder): the in-house baseline for every comparison.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .configuration_sections import (  # noqa: F401  (every name stays importable from here)
    AGGREGATION_MODES,
    ATTENTION_IMPLEMENTATIONS,
    BOX_SOURCES,
    COMMIT_MODES,
    CROP_SOURCES,
    DROPPING_LAYER_PRESETS,
    DROPPING_MODES,
    EGO_SOURCES,
    GLOBAL_TOKEN_KINDS,
    QUESTION_TIMINGS,
    REGIONS_ON,
    REGION_FEATURES,
    RESAMPLE_MODES,
    RESIZE_MODES,
    THINKING_MODES,
    TOKENIZE_MODES,
    VIDEOLLM_ONLINE_SYSTEM_PROMPT,
    AggregationConfig,
    ConfigError,
    CropConfig,
    DroppingConfig,
    EgoConfig,
    KeyframeConfig,
    LLMConfig,
    LoraSettings,
    RegionConfig,
    StreamConfig,
    ThinkingConfig,
    VisionConfig,
)


_NESTED = {
    "vision": VisionConfig,
    "ego": EgoConfig,
    "aggregation": AggregationConfig,
    "dropping": DroppingConfig,
    "llm": LLMConfig,
    "stream": StreamConfig,
    "thinking": ThinkingConfig,
    "crop": CropConfig,
}


@dataclass
class LionFSConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    ego: EgoConfig = field(default_factory=EgoConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    dropping: DroppingConfig = field(default_factory=DroppingConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    thinking: ThinkingConfig = field(default_factory=ThinkingConfig)
    crop: CropConfig = field(default_factory=CropConfig)

    @property
    def tokens_per_frame(self) -> int:
        return self.vision.tokens_per_frame

    @property
    def is_baseline(self) -> bool:
        """True for VideoLLM-online's design (no aggregation, no dropping)."""
        return self.aggregation.mode == "none" and self.dropping.mode == "none"

    def validate(self) -> "LionFSConfig":
        self.vision.validate("vision")
        self.ego.validate(self.vision)
        self.aggregation.validate(self.ego)
        self.dropping.validate()
        self.llm.validate()
        self.stream.validate()
        self.thinking.validate()
        self.crop.validate()
        if self.thinking.keyframes.region_tags and self.crop.reader_classes is None:
            raise ConfigError("thinking.keyframes.region_tags writes what the crop reader reads: it needs crop.reader_classes")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LionFSConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a LionFS config must be a mapping, got {type(data).__name__}")
        unknown = set(data) - set(_NESTED)
        if unknown:
            raise ConfigError(f"unknown LionFS config sections {sorted(unknown)}; known: {sorted(_NESTED)}")
        parts = {name: _build(kind, data.get(name) or {}, name) for name, kind in _NESTED.items()}
        return cls(**parts).validate()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "LionFSConfig":
        """Read a config from a ``.json`` or ``.yaml`` file; errors name the file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"LionFS config file not found: {path}")
        try:
            text = path.read_text()
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except (ValueError, ImportError) as err:
            raise ConfigError(f"{path}: cannot parse config: {err}") from err
        try:
            return cls.from_dict(data)
        except (ConfigError, TypeError) as err:
            raise ConfigError(f"{path}: {err}") from err


def _build(kind: type, data: Any, where: str):
    if isinstance(data, kind):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
    values = dict(data)
    if kind is EgoConfig and isinstance(values.get("tower"), dict):
        values["tower"] = _build(VisionConfig, values["tower"], f"{where}.tower")
    if kind is ThinkingConfig and isinstance(values.get("keyframes"), dict):
        values["keyframes"] = _build(KeyframeConfig, values["keyframes"], f"{where}.keyframes")
    if kind is ThinkingConfig and isinstance(values.get("regions"), dict):
        values["regions"] = _build(RegionConfig, values["regions"], f"{where}.regions")
    if kind is KeyframeConfig and "grid_sizes" in values:
        values["grid_sizes"] = tuple(int(g) for g in values["grid_sizes"])
    if kind is LLMConfig and "lora" in values:
        values["lora"] = _build(LoraSettings, values["lora"] or {}, f"{where}.lora")
    for name in ("image_mean", "image_std"):
        if name in values:
            values[name] = tuple(values[name])
    return kind(**values)
