"""``from_pretrained`` / ``save_pretrained`` for the TensorFlow models, through :mod:`weights_bridge`.

The bridge reads every supported checkpoint layout into canonical (HF PyTorch) names and checks
names and shapes strictly; this module assigns those arrays to the model's Keras variables with the
``hf_tf`` column of the bridge's rule table (variable path and layout permutation per tensor), and
reads them back for saving. A variable's path below the model's own name is its ``hf_tf`` name
without Keras 2's ``:0`` suffix. Canonical names belong to ``TFWhisperForConditionalGeneration``;
``TFWhisperModel`` has the same ``model/`` level (as in transformers' TF code), and
``TFWhisperForAudioClassification`` takes the encoder plus heads of its own.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from weights_bridge import canonical, rules, tf_h5
from whisper_core.config import WhisperConfig
from whisper_core.generation_config import GENERATION_CONFIG_NAME, GenerationConfig
from whisper_core.hub import resolve_file

logger = logging.getLogger(__name__)

FORMAT = "hf_tf"
TF_PREFIX = "model/"
KERAS2_SUFFIX = ":0"
DTYPES = ("float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16")
# The classification heads are not in the bridge's table (it describes the seq2seq checkpoint): the
# same layout facts apply (a Linear [out, in] is a Dense kernel [in, out]); the names are the heads' own.
HEADS: dict[str, tuple[str, tuple[int, ...] | None]] = {
    "projector.weight": ("projector/kernel", (1, 0)),
    "projector.bias": ("projector/bias", None),
    "classifier.weight": ("classifier/kernel", (1, 0)),
    "classifier.bias": ("classifier/bias", None),
    "layer_weights": ("layer_weights", None),
}


def _resolve_dtype(dtype: str | None, config: WhisperConfig) -> str:
    """float32 unless asked; "auto" takes the checkpoint's own dtype (often float16)."""
    if dtype is None:
        return "float32"
    if dtype == "auto":
        dtype = config.extra.get("torch_dtype") or config.extra.get("dtype") or "float32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES} or 'auto', got {dtype!r}")
    return dtype


def _checkpoint_dir(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        return path
    return resolve_file(name_or_path, "config.json").parent  # hub id: the snapshot directory


def _read_canonical(directory: Path, config: WhisperConfig, strict: bool) -> dict[str, np.ndarray]:
    """Canonical tensors of a checkpoint directory; a directory holding only HF's ``tf_model.h5`` is read
    through the bridge's h5 reader."""
    try:
        return canonical.load_weights(directory, config, strict=strict)
    except FileNotFoundError:
        if not (directory / tf_h5.TF_WEIGHTS_NAME).is_file():
            raise
    return dict(tf_h5.to_canonical(directory / tf_h5.TF_WEIGHTS_NAME, config))


def tf_names(config: WhisperConfig, with_prefix: bool = True) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """Canonical name -> (Keras variable path below the model, permutation from the canonical layout).

    From the ``hf_tf`` column of :mod:`weights_bridge.rules`, plus :data:`HEADS`; tied tensors have no
    variable. ``with_prefix=False`` drops the leading ``model/`` (the classification encoder sits at the
    top of its model).
    """
    table = {}
    for rule, index in rules.expand(config):
        if rule.kind == "tied":
            continue
        path = rules.concrete(rule.names[FORMAT], index).removesuffix(KERAS2_SUFFIX)
        table[rules.concrete(rule.canonical, index)] = (
            path if with_prefix else path.removeprefix(TF_PREFIX),
            rules.LAYOUTS[FORMAT].get(rule.kind),
        )
    return {**table, **HEADS}


def model_variables(model: Any) -> dict[str, Any]:
    """The model's variables by path below the model's own name (``model/encoder/conv1/kernel``)."""
    own = f"{model.name}/"
    return {variable.path.removeprefix(own): variable for variable in model.weights}


def load_variables(model: Any, tensors: dict[str, np.ndarray], source: str) -> None:
    """Assign canonical ``tensors`` to ``model``'s variables (cast to their dtype); every variable must be
    given (except new classification heads, left as initialised) and every shape must match, all
    checked before anything is assigned."""
    variables = model_variables(model)
    table = tf_names(model.config, with_prefix=any(path.startswith(TF_PREFIX) for path in variables))
    unknown = sorted(set(tensors) - set(table))
    if unknown:
        raise ValueError(f"{source} has tensors {type(model).__name__} does not know: {unknown[:8]}")
    assignments = []
    for name, array in tensors.items():
        path, permutation = table[name]
        if path not in variables:  # the decoder, for a classification model
            continue
        array = np.asarray(array) if permutation is None else np.transpose(array, permutation)
        expected = tuple(variables[path].shape)
        if tuple(array.shape) != expected:
            raise ValueError(f"{source}: {name} ({path}) has shape {tuple(array.shape)}, the model expects {expected}")
        assignments.append((variables[path], array))
    given = {path for path, _ in (table[name] for name in tensors)}
    heads = {path for path in variables if path.split("/")[0] in ("projector", "classifier", "layer_weights")}
    missing = sorted(set(variables) - given - heads)
    if missing:
        raise ValueError(f"{source} lacks {len(missing)} tensors of {type(model).__name__}: {missing[:8]}")
    new_heads = sorted(heads - given)
    if new_heads:
        logger.warning("%s: newly initialised (train them): %s", type(model).__name__, new_heads)
    for variable, array in assignments:
        variable.assign(array.astype(variable.dtype))


def canonical_tensors(model: Any, values: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """``model``'s variables under canonical names and layouts (the inverse of :func:`load_variables`).

    ``values`` (variable path -> tensor, e.g. gradients from a ``GradientTape`` keyed like
    :func:`model_variables`) are converted instead of the variables themselves. bfloat16 has no NumPy
    dtype, so bfloat16 weights come out as float32 (exactly representable).
    """
    variables = model_variables(model) if values is None else values
    table = tf_names(model.config, with_prefix=any(path.startswith(TF_PREFIX) for path in variables))
    by_path = {path: (name, permutation) for name, (path, permutation) in table.items()}
    unknown = sorted(set(variables) - set(by_path))
    if unknown:
        raise ValueError(f"the model has variables the weight table does not know: {unknown[:8]}")
    tensors = {}
    for path, variable in variables.items():
        name, permutation = by_path[path]
        array = np.asarray(tf.convert_to_tensor(variable))  # gradients of embeddings come as IndexedSlices
        if array.dtype.name == "bfloat16":
            array = array.astype(np.float32)
        tensors[name] = (
            array if permutation is None else np.ascontiguousarray(np.transpose(array, np.argsort(permutation)))
        )
    return tensors


class CheckpointMixin:
    """``from_pretrained`` and ``save_pretrained`` with transformers' signatures."""

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        dtype: str | None = None,
        config: WhisperConfig | None = None,
        **config_overrides: Any,
    ) -> Any:
        """Load a checkpoint directory (canonical safetensors, sharded, HF ``pytorch_model.bin`` or
        ``tf_model.h5``) or hub id.

        Weights are cast to ``dtype`` (a Keras dtype policy; float32 by default, "auto" = as stored: the
        converted OpenAI checkpoints hold float16). ``config_overrides`` change config values.
        """
        directory = _checkpoint_dir(pretrained_model_name_or_path)
        stored_config = WhisperConfig.from_pretrained(directory)
        # Models with heads of their own (audio classification) check names against themselves.
        tensors = _read_canonical(directory, stored_config, strict=cls.__name__ != "TFWhisperForAudioClassification")
        config = (config or stored_config).with_overrides(**config_overrides)
        generation_config = None
        if (directory / GENERATION_CONFIG_NAME).is_file():
            generation_config = GenerationConfig.from_pretrained(directory)
        return cls.from_canonical(
            config, tensors, generation_config, dtype=_resolve_dtype(dtype, stored_config), source=str(directory)
        )

    @classmethod
    def from_canonical(
        cls,
        config: WhisperConfig,
        tensors: dict[str, np.ndarray],
        generation_config: GenerationConfig | None = None,
        *,
        dtype: str = "float32",
        source: str = "the canonical tensors",
    ) -> Any:
        """A model from canonical (HF PyTorch-named) arrays: what every backend exchanges."""
        model = cls(config, dtype=dtype)
        load_variables(model, tensors, source)
        if generation_config is not None and hasattr(model, "generation_config"):
            model.generation_config = generation_config
        return model

    def canonical_tensors(self, values: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """The weights (or ``values`` keyed by variable path, such as gradients) under canonical names and
        layouts, as NumPy arrays."""
        return canonical_tensors(self, values)

    def save_pretrained(self, save_directory: str | os.PathLike, *, max_shard_size: int | None = None) -> Path:
        """Write config.json, generation_config.json (when the model has one) and canonical model.safetensors
        (sharded above ``max_shard_size`` bytes), each file atomically."""
        if any(variable.dtype == "bfloat16" for variable in self.weights):
            raise ValueError("bfloat16 weights cannot be written through NumPy safetensors yet: cast them first")
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        canonical.save_weights(directory, canonical_tensors(self), max_shard_bytes=max_shard_size)
        self.config.save_pretrained(directory)
        if hasattr(self, "generation_config"):
            self.generation_config.save_pretrained(directory)
        return directory
