"""mlx-whisper's model directory: ``config.json`` and ``weights.safetensors`` (or ``weights.npz``).

``config.json`` holds openai-whisper's ``ModelDimensions`` (plus ``"model_type"``, and ``"quantization"``
for MLX's own quantized models, which this reader refuses). The weights carry the ``mlx`` column's
names (openai-whisper's, with ``mlp1``/``mlp2``) in MLX's layouts (convolutions channels-last, [out, k,
in]). mlx-whisper computes the encoder's sinusoidal positions instead of storing them, ties the output
projection to the token embedding, and keeps its alignment heads (the cross-attention heads word
timestamps follow) as an int64 ``[N, 2]`` tensor ``alignment_heads`` beside the weights. Tokenizer and
mel filters come with mlx-whisper itself, so the directory needs nothing else; the converter still
writes the tokenizer and generation config beside them, which mlx-whisper ignores and a conversion
back restores.
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
from whisper_core.fileio import atomic_path, read_json, write_json

from . import canonical, engine, openai_pt

FORMAT = "mlx"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
NPZ_WEIGHTS_FILE = "weights.npz"
MODEL_TYPE = "whisper"
ALIGNMENT_HEADS = "alignment_heads"
SAFE_METADATA = {"format": "mlx"}  # what mlx.core.save_safetensors writes


def is_mlx(directory: Path) -> bool:
    """mlx-whisper directories have ``weights.safetensors``/``weights.npz`` and openai's dimension names."""
    if not ((directory / WEIGHTS_FILE).is_file() or (directory / NPZ_WEIGHTS_FILE).is_file()):
        return False
    return (directory / CONFIG_FILE).is_file() and "n_mels" in read_json(directory / CONFIG_FILE)


def read_dims(directory: Path) -> dict[str, int]:
    """openai's dimensions from ``config.json``, refusing keys mlx-whisper itself would refuse."""
    path = directory / CONFIG_FILE
    values = read_json(path)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: not a JSON object")
    if "quantization" in values:
        raise ValueError(
            f"{path}: this is an MLX-quantized model ({values['quantization']}), which this converter does not read; "
            "convert the float16 model instead"
        )
    dims = {key: value for key, value in values.items() if key != "model_type"}
    unknown, missing = sorted(set(dims) - set(openai_pt.DIMS)), sorted(set(openai_pt.DIMS) - set(dims))
    if unknown or missing:
        raise ValueError(
            f"{path}: mlx-whisper's config holds exactly {sorted(openai_pt.DIMS)}; missing {missing}, unknown {unknown}"
        )
    bad = [f"{key}={value!r}" for key, value in dims.items() if not isinstance(value, int) or value <= 0]
    if bad:
        raise ValueError(f"{path}: dimensions must be positive integers, got {', '.join(bad)}")
    return dims


def _weights(directory: Path) -> tuple[str, dict[str, Any], dict[str, tuple[int, ...]]]:
    """(the weights file, name -> loader, name -> shape), read lazily from safetensors or npz."""
    path = directory / WEIGHTS_FILE
    if path.is_file():
        try:
            with safe_open(str(path), framework="np") as file:
                shapes = {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}  # noqa: SIM118
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path}: not a readable safetensors file: {error}") from error

        def load(name: str) -> np.ndarray:
            try:
                with safe_open(str(path), framework="np") as file:
                    return canonical.read_safetensors_tensor(file, path, name)
            except (SafetensorError, OSError) as error:
                raise ValueError(f"{path}: cannot read tensor {name}: {error}") from error

        return str(path), {name: (lambda name=name: load(name)) for name in shapes}, shapes
    path = directory / NPZ_WEIGHTS_FILE
    try:
        archive = np.load(path, allow_pickle=False)
        names = list(archive.files)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable .npz file: {error}") from error

    def load_npz(name: str) -> np.ndarray:
        try:
            return archive[name]
        except (OSError, ValueError, EOFError) as error:  # zipfile errors are ValueError / OSError subclasses
            raise ValueError(f"{path}: cannot read tensor {name}: {error}") from error

    return str(path), {name: (lambda name=name: load_npz(name)) for name in names}, None


def read(directory: str | os.PathLike) -> tuple[WhisperConfig, engine.LazyTensors, list[list[int]] | None]:
    """The config, canonical tensors (lazy) and alignment heads (None if not stored) of an mlx-whisper directory."""
    directory = Path(directory)
    dims = read_dims(directory)
    source, loaders, shapes = _weights(directory)
    config = openai_pt.config_from_dims(dims, source=str(directory / CONFIG_FILE))
    heads = None
    if ALIGNMENT_HEADS in loaders:
        array = loaders.pop(ALIGNMENT_HEADS)()
        if array.ndim != 2 or array.shape[1] != 2 or array.dtype.kind not in "iu":
            raise ValueError(f"{source}: {ALIGNMENT_HEADS} must be integer [N, 2], got {array.dtype} {array.shape}")
        heads = array.astype(int).tolist()
        if any(
            not (0 <= layer < config.decoder_layers and 0 <= head < config.decoder_attention_heads)
            for layer, head in heads
        ):
            raise ValueError(f"{source}: {ALIGNMENT_HEADS} {heads} name heads the decoder does not have")
    tensors = engine.LazyTensors(loaders, shapes)
    first = next(iter(loaders), None)
    if first is not None:
        config = WhisperConfig.from_dict({**config.to_dict(), "torch_dtype": str(loaders[first]().dtype)})
    return config, engine.canonical_view(tensors, FORMAT, config, source=source), heads


def write(
    directory: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    config: WhisperConfig,
    alignment_heads: list[list[int]] | None,
    *,
    source: str = "weights",
) -> Path:
    """Write ``config.json`` and ``weights.safetensors`` into ``directory`` (each file atomically)."""
    directory = Path(directory)
    dims = openai_pt.dims_from_config(config)
    weights = {
        name: np.ascontiguousarray(array)
        for name, array in engine.foreign_view(tensors, FORMAT, config, source=source).items()
    }
    if alignment_heads:
        weights[ALIGNMENT_HEADS] = np.asarray(alignment_heads, dtype=np.int64).reshape(-1, 2)
    with atomic_path(directory / WEIGHTS_FILE) as temp_path:
        save_file(weights, str(temp_path), metadata=SAFE_METADATA)
    write_json(directory / CONFIG_FILE, {**dims, "model_type": MODEL_TYPE})
    return directory
