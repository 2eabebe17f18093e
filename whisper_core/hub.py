"""Resolve a file of a checkpoint given a local directory or a Hugging Face hub id.

Everything in this project reads the HF hub layout; a local directory is used as it is, and
anything else is treated as a hub id and fetched through ``huggingface_hub`` (a dependency of
``tokenizers``), with an error that says what happened when the hub cannot be reached.
"""

from __future__ import annotations

import os
from pathlib import Path


def resolve_file(name_or_path: str | os.PathLike, filename: str, *, required: bool = True) -> Path | None:
    """Return the local path of ``filename`` inside a checkpoint directory or hub repository.

    Returns ``None`` when the file does not exist and ``required`` is false.
    """
    local = Path(name_or_path)
    if local.is_file() and local.name == filename:
        return local
    if local.is_dir():
        candidate = local / filename
        if candidate.is_file():
            return candidate
        if required:
            raise FileNotFoundError(f"{local} has no {filename}")
        return None
    if local.exists() or (os.sep in str(name_or_path) and not _looks_like_hub_id(str(name_or_path))):
        raise FileNotFoundError(f"{name_or_path} is neither a checkpoint directory nor a hub id")
    return _download(str(name_or_path), filename, required=required)


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) <= 2 and all(parts) and not name.startswith((".", "~"))


def _download(repo_id: str, filename: str, *, required: bool) -> Path | None:
    if not _looks_like_hub_id(repo_id):
        raise FileNotFoundError(f"{repo_id} is neither a checkpoint directory nor a hub id")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError
    except ImportError as error:  # pragma: no cover - tokenizers always brings huggingface_hub
        raise FileNotFoundError(f"{repo_id} is not a local directory and huggingface_hub is not installed") from error
    try:
        return Path(hf_hub_download(repo_id, filename))
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"hub repository {repo_id} has no {filename}") from None
        return None
    except Exception as error:
        raise OSError(
            f"could not fetch {filename} of {repo_id!r} from the Hugging Face hub ({type(error).__name__}: {error}). "
            "Offline? Pass a local checkpoint directory instead, e.g. one made by `whisper-mb fetch tiny.en`."
        ) from error
