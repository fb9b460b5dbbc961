"""A TensorBoard writer for the parts of a run the HF Trainer does not log (stage 1, validation)."""
from __future__ import annotations

from pathlib import Path


def open_writer(log_dir: Path, part: str):
    """A ``SummaryWriter`` on ``log_dir`` (PyTorch's, else tensorboardX's, as the HF callback picks), or None
    when neither is installed. ``part`` ends its file name: event files are named by the second they were
    opened in, and two writers opened in the same second would otherwise write into one file."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            return None
    return SummaryWriter(log_dir=str(log_dir), filename_suffix=f".{part}")
