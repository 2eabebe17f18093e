"""The canonical checkpoint directory: HF-layout weights plus config, generation, feature and tokenizer files.

Weights are ``model.safetensors`` (or shards listed in ``model.safetensors.index.json``) under HF
PyTorch names, with ``proj_out.weight`` left out because it is tied to
``model.decoder.embed_tokens.weight`` (what transformers 4.57 ``save_pretrained`` writes). HF's
older ``pytorch_model.bin`` is read too, importing torch only then. Every file is written through
:func:`whisper_core.fileio.atomic_path`, so a failed save leaves no partial file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from whisper_core.config import WhisperConfig
from whisper_core.feature_extraction import WhisperFeatureExtractor
from whisper_core.fileio import atomic_path, read_json, write_json
from whisper_core.generation_config import GenerationConfig
from whisper_core.tokenizer import WhisperTokenizer

from . import bfloat16, engine

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PT_WEIGHTS_NAME = "pytorch_model.bin"
PT_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
# transformers marks PyTorch-layout safetensors files this way and refuses files without a format.
SAFE_METADATA = {"format": "pt"}


def _shard_name(index: int, count: int) -> str:
    return f"model-{index:05d}-of-{count:05d}.safetensors"


def read_safetensors_tensor(file: Any, path: Path, name: str) -> np.ndarray:
    """Tensor ``name`` of the safetensors ``file`` open (``safe_open``) at ``path``; bfloat16 is widened to
    float32 exactly (see :mod:`.bfloat16`), whether or not NumPy has a bfloat16 type registered."""
    if file.get_slice(name).get_dtype() == "BF16":
        return bfloat16.safetensors_tensors(path, [name])[name]
    return file.get_tensor(name)


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    try:
        with safe_open(str(path), framework="np") as file:
            return {name: read_safetensors_tensor(file, path, name) for name in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path}: not a readable safetensors file: {error}") from error


def _read_index(directory: Path, index_name: str) -> dict[str, list[str]]:
    """Shard file -> the tensor names the index assigns to it."""
    index = read_json(directory / index_name)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{directory / index_name}: has no weight_map")
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        shards.setdefault(shard, []).append(name)
    return shards


def _read_sharded(directory: Path, index_name: str, read: Any) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for shard, names in _read_index(directory, index_name).items():
        content = read(directory / shard)
        if set(content) != set(names):
            raise ValueError(f"{directory / shard}: holds other tensors than {index_name} lists for it")
        tensors.update(content)
    return tensors


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    """A ``torch.save``-d state dict, loaded with ``weights_only=True`` (no code runs from the file)."""
    try:
        import torch
    except ImportError:
        raise ImportError(f"reading {path} needs PyTorch: pip install 'whisper-multibackend[torch]'") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad pickle or zip
        raise ValueError(f"{path}: not a readable PyTorch state dict: {error}") from error
    tensors = {}
    for name, tensor in state.items():
        if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16: widened exactly (see .bfloat16)
            tensor = tensor.float()
        tensors[name] = tensor.detach().cpu().numpy()
    return tensors


def _safetensors_files(directory: Path) -> list[Path]:
    """Every safetensors weight file present: the single file, the index and the shards it lists."""
    files = [directory / SAFE_WEIGHTS_NAME] if (directory / SAFE_WEIGHTS_NAME).is_file() else []
    if (directory / SAFE_WEIGHTS_INDEX_NAME).is_file():
        files += [directory / SAFE_WEIGHTS_INDEX_NAME]
        files += [directory / shard for shard in _read_index(directory, SAFE_WEIGHTS_INDEX_NAME)]
    return files


def load_weights(
    directory: str | os.PathLike, config: WhisperConfig | None = None, *, strict: bool = True
) -> dict[str, np.ndarray]:
    """Read the stored canonical tensors of a checkpoint directory.

    Prefers safetensors (single or sharded) over ``pytorch_model.bin``; drops ``proj_out.weight``
    when it duplicates the embedding; checks names and shapes against the config strictly, unless
    ``strict=False`` (a model with heads of its own, such as audio classification, checks them itself).
    """
    directory = Path(directory)
    if (directory / SAFE_WEIGHTS_NAME).is_file():
        source, tensors = directory / SAFE_WEIGHTS_NAME, _read_safetensors(directory / SAFE_WEIGHTS_NAME)
    elif (directory / SAFE_WEIGHTS_INDEX_NAME).is_file():
        source = directory / SAFE_WEIGHTS_INDEX_NAME
        tensors = _read_sharded(directory, SAFE_WEIGHTS_INDEX_NAME, _read_safetensors)
    elif (directory / PT_WEIGHTS_NAME).is_file():
        source, tensors = directory / PT_WEIGHTS_NAME, _read_torch(directory / PT_WEIGHTS_NAME)
    elif (directory / PT_WEIGHTS_INDEX_NAME).is_file():
        source = directory / PT_WEIGHTS_INDEX_NAME
        tensors = _read_sharded(directory, PT_WEIGHTS_INDEX_NAME, _read_torch)
    else:
        raise FileNotFoundError(
            f"{directory} holds no weights: expected {SAFE_WEIGHTS_NAME}, {SAFE_WEIGHTS_INDEX_NAME} or {PT_WEIGHTS_NAME}"
        )
    if config is None:
        config = WhisperConfig.from_pretrained(directory)
    if not strict:
        return tensors
    tensors = engine.drop_tied(tensors, config, source=str(source))
    engine.check_canonical(tensors, config, source=str(source))
    return tensors


def save_weights(
    directory: str | os.PathLike, tensors: Mapping[str, np.ndarray], *, max_shard_bytes: int | None = None
) -> list[Path]:
    """Write ``tensors`` as ``model.safetensors``, or as shards of at most ``max_shard_bytes`` plus an index.

    Tensors are written in name order (as transformers does) and each file atomically; weight files
    of the other layout (a stale index and its shards, or a stale single file) are removed afterwards,
    so the directory never offers two sets of weights.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ordered = {name: np.ascontiguousarray(tensors[name]) for name in sorted(tensors)}
    stale = _safetensors_files(directory)
    total = sum(array.nbytes for array in ordered.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        written = [_write_safetensors(directory / SAFE_WEIGHTS_NAME, ordered)]
    else:
        groups: list[dict[str, np.ndarray]] = [{}]
        size = 0
        for name, array in ordered.items():
            if groups[-1] and size + array.nbytes > max_shard_bytes:
                groups.append({})
                size = 0
            groups[-1][name] = array
            size += array.nbytes
        written = [_write_safetensors(directory / _shard_name(i + 1, len(groups)), g) for i, g in enumerate(groups)]
        weight_map = {name: path.name for path, group in zip(written, groups, strict=True) for name in group}
        write_json(directory / SAFE_WEIGHTS_INDEX_NAME, {"metadata": {"total_size": total}, "weight_map": weight_map})
        written.append(directory / SAFE_WEIGHTS_INDEX_NAME)
    for path in stale:
        if path not in written and path.exists():
            path.unlink()
    return written


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    with atomic_path(path) as temp_path:
        save_file(tensors, str(temp_path), metadata=SAFE_METADATA)
    return path


def save_generation_config(directory: str | os.PathLike, generation_config: GenerationConfig) -> Path:
    """Write ``generation_config.json`` (every key with a value, so transformers decodes the same way)."""
    return generation_config.save_pretrained(directory)


def save_checkpoint(
    directory: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    config: WhisperConfig,
    *,
    generation_config: GenerationConfig | None = None,
    feature_extractor: WhisperFeatureExtractor | None = None,
    tokenizer: WhisperTokenizer | None = None,
    max_shard_bytes: int | None = None,
) -> Path:
    """Write a canonical checkpoint directory (weights checked against ``config`` before anything is written)."""
    tensors = engine.drop_tied(tensors, config, source="the weights to save")
    engine.check_canonical(tensors, config, source="the weights to save")
    directory = Path(directory)
    save_weights(directory, tensors, max_shard_bytes=max_shard_bytes)
    config.save_pretrained(directory)
    if generation_config is not None:
        save_generation_config(directory, generation_config)
    if feature_extractor is not None:
        feature_extractor.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory


def load_checkpoint(directory: str | os.PathLike) -> tuple[WhisperConfig, dict[str, np.ndarray]]:
    """The config and the strictly checked stored tensors of a canonical (or HF) checkpoint directory."""
    config = WhisperConfig.from_pretrained(directory)
    return config, load_weights(directory, config)
