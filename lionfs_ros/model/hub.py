"""Model names: a local path, or a Hugging Face hub id (``org/name``) resolved into the hub cache.

``huggingface_hub`` downloads a hub id into its cache (``HF_HUB_CACHE``) and, with
``HF_HUB_OFFLINE=1``, finds it there without the network. Only safetensors and the config,
tokenizer and adapter files are fetched: never a pickle.
"""
from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
FETCHED_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer/*", "adapter/*"]


def is_hub_id(name: str) -> bool:
    """``org/name`` that is not an existing local path."""
    return bool(HUB_ID.match(name)) and not Path(name).expanduser().exists()


def resolve(name: str) -> Path:
    """A local directory or file for ``name`` (a path, or a hub id fetched into the cache)."""
    if not is_hub_id(name):
        return Path(name).expanduser()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id=name, allow_patterns=FETCHED_FILES))
    except (LocalEntryNotFoundError, RepositoryNotFoundError, OSError) as err:
        raise FileNotFoundError(
            f"{name!r} is neither a local path nor a hub model in the cache (HF_HUB_CACHE) or on the hub: {err}"
        ) from err
