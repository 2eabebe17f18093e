"""What every backend's ``from_pretrained`` and ``save_pretrained`` share, written once.

Which directory (a local path, or a hub id's snapshot), which weights in it (canonical safetensors,
sharded or not, or HF's ``pytorch_model.bin``; else the backend's own HF file, ``tf_model.h5`` or
``flax_model.msgpack``), what ``"auto"`` means for a dtype (what the checkpoint's config says it
stores), the strict match of canonical tensors with a live model's parameters before anything is
assigned (names through :func:`weights_bridge.rules.parameter_names`, every shape checked), the way
back to canonical names, and the files ``save_pretrained`` writes. A backend keeps only its framework
calls: listing its parameters and their shapes, assigning and reading arrays, casting.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from whisper_core.config import WhisperConfig
from whisper_core.generation_config import GENERATION_CONFIG_NAME, GenerationConfig
from whisper_core.hub import resolve_file

from . import canonical, engine, flax_msgpack, rules, tf_h5

logger = logging.getLogger(__name__)

# The dtypes checkpoints store weights in (``torch_dtype`` in config.json), by NumPy/PyTorch name.
WEIGHT_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")

# The backend-native HF weight file a directory may hold instead of canonical weights, per table column.
NATIVE_FILES = {
    "hf_tf": (tf_h5.TF_WEIGHTS_NAME, tf_h5.to_canonical),
    "hf_flax": (flax_msgpack.FLAX_WEIGHTS_NAME, flax_msgpack.to_canonical),
}
# Canonical tensors a classification model (an encoder with heads) has no parameters for.
DECODER_ONLY = ("model.decoder.", "proj_out.")
# True while a backend builds a model whose every weight a checkpoint is about to give (see
# :func:`building_for_checkpoint`). Per context, so a model built meanwhile in another thread is initialised
# as usual.
_WEIGHTS_TO_COME = contextvars.ContextVar("weights_to_come", default=False)


@contextlib.contextmanager
def building_for_checkpoint(has_new_heads: bool) -> Iterator[None]:
    """The block in which a backend's ``from_canonical`` builds its model before loading a checkpoint into it.
    Unless the model has heads the checkpoint lacks (a classification model), every weight is about to be
    replaced, so drawing random initial values is wasted work (PyTorch base: 0.75 s, TensorFlow: 0.9 s;
    measured 2026-12-04 to 12-06): inside the block :func:`weights_to_come` is true and the backends'
    initialisers fill nothing (PyTorch) or zeros (TensorFlow) instead."""
    arriving = _WEIGHTS_TO_COME.set(not has_new_heads)
    try:
        yield
    finally:
        _WEIGHTS_TO_COME.reset(arriving)


def weights_to_come() -> bool:
    """Whether the model being built in this context gets every weight from a checkpoint next, so its
    random initialisation may be skipped (:func:`building_for_checkpoint`)."""
    return _WEIGHTS_TO_COME.get()


def checkpoint_dir(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint directory of a local path or a hub id (its snapshot directory)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    return resolve_file(name_or_path, "config.json").parent


def read_weights(
    directory: Path, config: WhisperConfig, *, strict: bool, native: str | None = None
) -> Mapping[str, np.ndarray]:
    """Canonical tensors of a checkpoint directory; one holding none but the HF file of the ``native``
    column (``"hf_tf"``, ``"hf_flax"``) is read through that format's reader."""
    try:
        return canonical.load_weights(directory, config, strict=strict)
    except FileNotFoundError:
        if native is None or not (directory / NATIVE_FILES[native][0]).is_file():
            raise
    file_name, to_canonical = NATIVE_FILES[native]
    return dict(to_canonical(directory / file_name, config))


@dataclass(frozen=True)
class Pretrained:
    """A checkpoint read for ``from_pretrained``: its tensors, the config to build the model with
    (overrides applied) and the stored one, and the generation config when the directory has one."""

    directory: Path
    tensors: Mapping[str, np.ndarray]
    config: WhisperConfig
    stored_config: WhisperConfig
    generation_config: GenerationConfig | None

    @property
    def source(self) -> str:
        return str(self.directory)

    @property
    def model_arguments(self) -> dict[str, Any]:
        """The keyword arguments of a backend's ``from_canonical`` but its dtypes."""
        return {
            "config": self.config,
            "tensors": self.tensors,
            "generation_config": self.generation_config,
            "source": self.source,
        }

    def dtype(self, requested: Any) -> Any:
        """float32 unless asked; "auto" takes the checkpoint's own dtype (often float16). Anything else
        is returned as asked, for the backend to check against its framework's dtypes."""
        if requested is None:
            return "float32"
        if isinstance(requested, str) and requested == "auto":
            extra = self.stored_config.extra
            return extra.get("torch_dtype") or extra.get("dtype") or "float32"
        return requested


def load(
    name_or_path: str | os.PathLike,
    *,
    has_heads: bool,
    config: WhisperConfig | None = None,
    native: str | None = None,
    **config_overrides: Any,
) -> Pretrained:
    """Read a checkpoint directory or hub id for a backend's ``from_pretrained``. Names are checked
    strictly against the config, except for a model that ``has_heads`` of its own (audio classification),
    whose names are checked against its parameters (:func:`match_parameters`)."""
    directory = checkpoint_dir(name_or_path)
    stored_config = WhisperConfig.from_pretrained(directory)
    tensors = read_weights(directory, stored_config, strict=not has_heads, native=native)
    config = (config or stored_config).with_overrides(**config_overrides)
    generation_config = None
    if (directory / GENERATION_CONFIG_NAME).is_file():
        generation_config = GenerationConfig.from_pretrained(directory)
    return Pretrained(directory, tensors, config, stored_config, generation_config)


def _live_names(
    naming: rules.Naming, config: Any, parameters: Iterable[str]
) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """:func:`~weights_bridge.rules.parameter_names` for a model whose parameters are named ``parameters``
    (with the top ``model`` level or without it)."""
    with_prefix = any(name.startswith(naming.prefix) for name in parameters)
    return rules.parameter_names(naming, config, with_prefix=with_prefix)


def match_parameters(
    tensors: Mapping[str, np.ndarray],
    naming: rules.Naming,
    shapes: Mapping[str, tuple[int, ...]],
    config: Any,
    *,
    source: str,
    model: str,
) -> dict[str, np.ndarray]:
    """Canonical ``tensors`` as the arrays of a live model's parameters, by parameter name (permuted into
    its layout, not cast), all checked before the backend assigns anything.

    ``naming``: how the model names its parameters; ``shapes``: each of them with its shape. Every tensor
    must name a parameter, and a tensor the model has no parameter for must be one a classification model
    drops (the decoder); every shape must match; every parameter must be given except a tied one and new
    classification heads, which are left as initialised (and logged).
    """
    names = _live_names(naming, config, shapes)
    unknown = sorted(
        name
        for name in tensors
        if name not in names or (names[name][0] not in shapes and not name.startswith(DECODER_ONLY))
    )
    if unknown:
        raise ValueError(f"{source} has tensors {model} does not know: {unknown[:8]}")
    arrays = {}
    for name, array in tensors.items():
        path, permutation = names[name]
        if path not in shapes:  # the decoder, for a classification model
            continue
        array = np.asarray(array) if permutation is None else np.transpose(array, permutation)
        if tuple(array.shape) != tuple(shapes[path]):
            where = name if path == name else f"{name} ({path})"
            raise ValueError(
                f"{source}: {where} has shape {tuple(array.shape)}, the model expects {tuple(shapes[path])}"
            )
        arrays[path] = array
    heads = {names[name][0] for name in rules.HEADS} & set(shapes)
    tied = {names[name][0] for name in _tied(config) if name in names}
    missing = sorted(set(shapes) - set(arrays) - heads - tied)
    if missing:
        raise ValueError(f"{source} lacks {len(missing)} tensors of {model}: {missing[:8]}")
    new_heads = sorted(heads - set(arrays))
    if new_heads:
        logger.warning("%s: newly initialised (train them): %s", model, new_heads)
    return arrays


def canonical_tensors(values: Mapping[str, np.ndarray], naming: rules.Naming, config: Any) -> dict[str, np.ndarray]:
    """A live model's parameter arrays (``values``, by parameter name) under canonical names and layouts,
    tied tensors left out: the inverse of :func:`match_parameters`."""
    names = _live_names(naming, config, values)
    by_path = {path: (name, permutation) for name, (path, permutation) in names.items()}
    unknown = sorted(set(values) - set(by_path))
    if unknown:
        raise ValueError(f"the model has parameters the weight table does not know: {unknown[:8]}")
    tied = _tied(config)
    tensors = {}
    for path, array in values.items():
        name, permutation = by_path[path]
        if name not in tied:
            tensors[name] = (
                array if permutation is None else np.ascontiguousarray(np.transpose(array, np.argsort(permutation)))
            )
    return tensors


def _tied(config: Any) -> set[str]:
    """The canonical names of tied tensors (``proj_out.weight``) when ``config`` ties them."""
    return set(engine.tied_names(config)) if getattr(config, "tie_word_embeddings", True) else set()


def save(
    save_directory: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    config: WhisperConfig,
    generation_config: GenerationConfig | None,
    *,
    max_shard_size: int | None = None,
) -> Path:
    """Write config.json, generation_config.json (when there is one) and canonical model.safetensors
    (sharded above ``max_shard_size`` bytes), each file atomically."""
    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    canonical.save_weights(directory, tensors, max_shard_bytes=max_shard_size)
    config.save_pretrained(directory)
    if generation_config is not None:
        generation_config.save_pretrained(directory)
    return directory
