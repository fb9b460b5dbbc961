"""Files shipped inside the package: the bundled demo model."""
from __future__ import annotations

from pathlib import Path

DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"


def demo_model_path() -> Path:
    """The bundled demo model's directory (a LionFS model directory: config.json, safetensors, tokenizer)."""
    if not (DEMO_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(f"the bundled demo model is missing from {DEMO_MODEL_DIR}: reinstall lionfs_ros")
    return DEMO_MODEL_DIR
