"""Resolve a model path, device and dtype for inference, with errors a user can act on. ROS-free."""
from __future__ import annotations

from pathlib import Path

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message says which path and why."""


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available here")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose auto, {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[dtype])


def resolve_model_path(model_path: str) -> Path:
    """An explicit directory, a hub id (``org/name``, fetched into the hub cache; offline, found
    there), or the bundled demo model when `model_path` is empty."""
    if not model_path:
        from lionfs_ros.resources import demo_model_path

        return demo_model_path()
    from lionfs_ros.model.hub import is_hub_id, resolve

    if is_hub_id(model_path):
        try:
            return resolve_model_path(str(resolve(model_path)))
        except FileNotFoundError as err:
            raise ModelLoadError(str(err)) from err
    path = Path(model_path).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model path {path} does not exist")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a model directory: no config.json")
    return path


def load_for_inference(model_path: str = "", device: str = "auto", dtype: str = "auto"):
    """(model, resolved path, device): a LionFSModel in eval mode, ready for the engine."""
    from lionfs_ros.model import LionFSModel

    path = resolve_model_path(model_path)
    device = resolve_device(device)
    try:
        model = LionFSModel.from_pretrained(path, device=device, dtype=resolve_dtype(dtype, device))
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"cannot load the model in {path}: {err}") from err
    return ready_for_inference(model), path, device


def ready_for_inference(model):
    """Eval mode; on CUDA a LoRA is folded into the backbone (inference only), so the CUDA-graph backend runs it."""
    if model.device.type == "cuda" and model.config.llm.lora.enabled:
        model.merge_lora()
    return model.eval()
