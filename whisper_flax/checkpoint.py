"""``from_pretrained`` / ``save_pretrained`` for the Flax models, through :mod:`weights_bridge`.

The bridge reads every supported checkpoint layout into canonical (HF PyTorch) names and checks
names and shapes strictly; this module turns those arrays into the model's ``params`` tree with the
``hf_flax`` column of the bridge's rule table (Flax path and layout permutation per tensor), and
back for saving. Canonical names belong to ``FlaxWhisperForConditionalGeneration`` (``model/...``);
``FlaxWhisperModel`` has no ``model/`` level and ``FlaxWhisperForAudioClassification`` takes the
encoder plus heads of its own, as transformers does.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from weights_bridge import canonical, flax_msgpack, rules
from whisper_core.config import WhisperConfig
from whisper_core.generation_config import GENERATION_CONFIG_NAME, GenerationConfig
from whisper_core.hub import resolve_file

logger = logging.getLogger(__name__)

FORMAT = "hf_flax"
FLAX_PREFIX = "model/"
# The classification heads are not in the bridge's table (it describes the seq2seq checkpoint): the
# same layout facts apply (a Linear [out, in] is a Dense kernel [in, out]); the names are the heads' own.
HEADS: dict[str, tuple[str, tuple[int, ...] | None]] = {
    "projector.weight": ("projector/kernel", (1, 0)),
    "projector.bias": ("projector/bias", None),
    "classifier.weight": ("classifier/kernel", (1, 0)),
    "classifier.bias": ("classifier/bias", None),
    "layer_weights": ("layer_weights", None),
}


def _resolve_dtype(dtype: Any, config: WhisperConfig) -> jnp.dtype:
    """float32 unless asked; "auto" takes the checkpoint's own dtype (often float16)."""
    if dtype is None:
        return jnp.dtype(jnp.float32)
    if dtype == "auto":
        dtype = config.extra.get("torch_dtype") or config.extra.get("dtype") or "float32"
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.float32, jnp.float16, jnp.bfloat16):
        raise ValueError(f"unsupported dtype {dtype}: use float32, float16 or bfloat16")
    return dtype


def _checkpoint_dir(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        return path
    return resolve_file(name_or_path, "config.json").parent  # hub id: the snapshot directory


def _read_canonical(directory: Path, config: WhisperConfig, strict: bool) -> dict[str, np.ndarray]:
    """Canonical tensors of a checkpoint directory; a directory holding only HF's ``flax_model.msgpack``
    is read through the bridge's Flax reader."""
    msgpack = directory / flax_msgpack.FLAX_WEIGHTS_NAME
    try:
        return canonical.load_weights(directory, config, strict=strict)
    except FileNotFoundError:
        if not msgpack.is_file():
            raise
    return dict(flax_msgpack.to_canonical(msgpack, config))


def flax_names(config: WhisperConfig, with_prefix: bool = True) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """Canonical name -> (Flax param path, permutation from the canonical layout), for ``config``.

    From the ``hf_flax`` column of :mod:`weights_bridge.rules`, plus :data:`HEADS`; tied tensors have
    no Flax parameter. ``with_prefix=False`` drops the leading ``model/`` (``FlaxWhisperModel`` and the
    classification encoder sit at the top of their trees).
    """
    table = {}
    for rule, index in rules.expand(config):
        if rule.kind == "tied":
            continue
        path = rules.concrete(rule.names[FORMAT], index)
        table[rules.concrete(rule.canonical, index)] = (
            path if with_prefix else path.removeprefix(FLAX_PREFIX),
            rules.LAYOUTS[FORMAT].get(rule.kind),
        )
    return {**table, **HEADS}


def _flat(params: Any) -> dict[str, Any]:
    return {"/".join(path): leaf for path, leaf in flatten_dict(params).items()}


def load_params(model: Any, tensors: dict[str, np.ndarray], source: str, dtype: Any) -> dict[str, Any]:
    """The params tree of ``model`` from canonical ``tensors``, cast to ``dtype``; every parameter must be
    given (except new classification heads, initialised randomly) and every shape must match."""
    init = partial(model.init_weights, input_shape=model.input_shape)
    expected = _flat(jax.eval_shape(init, jax.random.PRNGKey(0)))  # shapes only: nothing is computed
    table = flax_names(model.config, with_prefix=any(path.startswith(FLAX_PREFIX) for path in expected))
    unknown = sorted(set(tensors) - set(table))
    if unknown:
        raise ValueError(f"{source} has tensors {type(model).__name__} does not know: {unknown[:8]}")
    flat: dict[str, Any] = {}
    for name, array in tensors.items():
        path, permutation = table[name]
        if path not in expected:  # the decoder, for a classification model
            continue
        array = np.asarray(array) if permutation is None else np.transpose(array, permutation)
        if tuple(array.shape) != tuple(expected[path].shape):
            raise ValueError(
                f"{source}: {name} ({path}) has shape {tuple(array.shape)}, the model expects {expected[path].shape}"
            )
        flat[path] = jnp.asarray(array, dtype=dtype)
    heads = {path for path in expected if path.split("/")[0] in ("projector", "classifier", "layer_weights")}
    missing = sorted(set(expected) - set(flat) - heads)
    if missing:
        raise ValueError(f"{source} lacks {len(missing)} tensors of {type(model).__name__}: {missing[:8]}")
    new_heads = sorted(heads - set(flat))
    if new_heads:
        logger.warning("%s: newly initialised (train them): %s", type(model).__name__, new_heads)
        fresh = _flat(model.init_weights(jax.random.PRNGKey(0), model.input_shape))
        flat.update({path: fresh[path].astype(dtype) for path in new_heads})
    return unflatten_dict({tuple(path.split("/")): leaf for path, leaf in flat.items()})


def canonical_tensors(params: Any, config: WhisperConfig) -> dict[str, np.ndarray]:
    """``params`` -> canonical names and layouts (the inverse of :func:`load_params`)."""
    flat = _flat(params)
    table = flax_names(config, with_prefix=any(path.startswith(FLAX_PREFIX) for path in flat))
    by_path = {path: (name, permutation) for name, (path, permutation) in table.items()}
    unknown = sorted(set(flat) - set(by_path))
    if unknown:
        raise ValueError(f"params have entries the weight table does not know: {unknown[:8]}")
    tensors = {}
    for path, leaf in flat.items():
        name, permutation = by_path[path]
        array = np.asarray(leaf)
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
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        config: WhisperConfig | None = None,
        **config_overrides: Any,
    ) -> Any:
        """Load a checkpoint directory (canonical safetensors, sharded, HF ``pytorch_model.bin`` or
        ``flax_model.msgpack``) or hub id.

        ``dtype`` is the compute dtype; parameters are cast to ``param_dtype`` (float32 by default, "auto" =
        as stored: the converted OpenAI checkpoints hold float16). ``config_overrides`` change config values.
        """
        directory = _checkpoint_dir(pretrained_model_name_or_path)
        stored_config = WhisperConfig.from_pretrained(directory)
        # Models with heads of their own (audio classification) check names against themselves.
        tensors = _read_canonical(directory, stored_config, strict=cls.__name__ != "FlaxWhisperForAudioClassification")
        config = (config or stored_config).with_overrides(**config_overrides)
        generation_config = None
        if (directory / GENERATION_CONFIG_NAME).is_file():
            generation_config = GenerationConfig.from_pretrained(directory)
        return cls.from_canonical(
            config,
            tensors,
            generation_config,
            dtype=_resolve_dtype(dtype, stored_config),
            param_dtype=_resolve_dtype(param_dtype, stored_config),
            source=str(directory),
        )

    @classmethod
    def from_canonical(
        cls,
        config: WhisperConfig,
        tensors: dict[str, np.ndarray],
        generation_config: GenerationConfig | None = None,
        *,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        source: str = "the canonical tensors",
    ) -> Any:
        """A model from canonical (HF PyTorch-named) arrays: what every backend exchanges."""
        model = cls(config, dtype=dtype, param_dtype=param_dtype, _do_init=False)
        model.params = load_params(model, tensors, source, param_dtype)
        if generation_config is not None and hasattr(model, "generation_config"):
            model.generation_config = generation_config
        return model

    def canonical_tensors(self, params: Any = None) -> dict[str, np.ndarray]:
        """The weights (``params``, default this model's) under canonical names and layouts, as NumPy arrays."""
        return canonical_tensors(params if params is not None else self.params, self.config)

    def save_pretrained(
        self, save_directory: str | os.PathLike, params: Any = None, *, max_shard_size: int | None = None
    ) -> Path:
        """Write config.json, generation_config.json (when the model has one) and canonical model.safetensors
        (sharded above ``max_shard_size`` bytes), each file atomically."""
        params = params if params is not None else self.params
        if any(leaf.dtype == jnp.bfloat16 for leaf in jax.tree_util.tree_leaves(params)):
            raise ValueError("bfloat16 weights cannot be written through NumPy safetensors yet: cast them first")
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        canonical.save_weights(directory, canonical_tensors(params, self.config), max_shard_bytes=max_shard_size)
        self.config.save_pretrained(directory)
        if hasattr(self, "generation_config"):
            self.generation_config.save_pretrained(directory)
        return directory
