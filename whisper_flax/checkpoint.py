"""``from_pretrained`` / ``save_pretrained`` for the Flax models, through :mod:`weights_bridge`.

The bridge reads every supported checkpoint layout into canonical (HF PyTorch) names, checks names
and shapes strictly and matches them with the model's ``params`` tree
(:data:`weights_bridge.rules.FLAX_PARAMS`: the ``hf_flax`` names, the layout permuted as the table
says); this module turns those arrays into the tree and back for saving. Canonical names belong to
``FlaxWhisperForConditionalGeneration`` (``model/...``); ``FlaxWhisperModel`` has no ``model/`` level
and ``FlaxWhisperForAudioClassification`` takes the encoder plus heads of its own, as transformers does.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from weights_bridge import pretrained, quantization, rules
from whisper_core.config import WhisperConfig
from whisper_core.generation_config import GenerationConfig

from .generation import on_device


def _resolve_dtype(dtype: Any, checkpoint: pretrained.Pretrained) -> jnp.dtype:
    """float32 unless asked; "auto" takes the checkpoint's own dtype (often float16)."""
    dtype = jnp.dtype(checkpoint.dtype(dtype))
    if dtype.name not in pretrained.WEIGHT_DTYPES:
        raise ValueError(f"unsupported dtype {dtype}: use float32, float16 or bfloat16")
    return dtype


def _flat(params: Any) -> dict[str, Any]:
    return {"/".join(path): leaf for path, leaf in flatten_dict(params).items()}


def load_params(model: Any, tensors: dict[str, np.ndarray], source: str, dtype: Any) -> dict[str, Any]:
    """The params tree of ``model`` from canonical ``tensors``, cast to ``dtype``; every parameter must be
    given (except new classification heads, initialised randomly) and every shape must match."""
    init = model._compiled(
        ("init_weights", model.input_shape), lambda: jax.jit(partial(model.init_weights, input_shape=model.input_shape))
    )
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)  # a key's shape: making a real one compiles two programs
    # Shapes only: nothing is computed, and where programs are kept nothing is traced either (0.24 s for base).
    expected = _flat(init.output_shapes(key))
    shapes = {path: tuple(leaf.shape) for path, leaf in expected.items()}
    arrays = pretrained.match_parameters(
        tensors, rules.FLAX_PARAMS, shapes, model.config, source=source, model=type(model).__name__
    )
    flat = {path: on_device(array, jnp.dtype(dtype)) for path, array in arrays.items()}
    new_heads = sorted(set(expected) - set(flat))  # all that the checks leave out
    if new_heads:
        fresh = _flat(model.init_weights(jax.random.PRNGKey(0), model.input_shape))
        flat.update({path: fresh[path].astype(dtype) for path in new_heads})
    return unflatten_dict({tuple(path.split("/")): leaf for path, leaf in flat.items()})


def canonical_tensors(params: Any, config: WhisperConfig) -> dict[str, np.ndarray]:
    """``params`` -> canonical names and layouts (the inverse of :func:`load_params`)."""
    arrays = {path: np.asarray(leaf) for path, leaf in _flat(params).items()}
    return pretrained.canonical_tensors(arrays, rules.FLAX_PARAMS, config)


class CheckpointMixin:
    """``from_pretrained`` and ``save_pretrained`` with transformers' signatures."""

    # A model with heads of its own (audio classification) loads any checkpoint of the same encoder.
    has_classification_heads: ClassVar[bool] = False

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        dtype: Any = None,
        param_dtype: Any = None,
        config: WhisperConfig | None = None,
        compute_type: str | None = None,
        **config_overrides: Any,
    ) -> Any:
        """Load a checkpoint directory (canonical safetensors, sharded, HF ``pytorch_model.bin`` or
        ``flax_model.msgpack``) or hub id.

        ``dtype`` is the compute dtype; parameters are cast to ``param_dtype`` (float32 by default, "auto" =
        as stored: the converted OpenAI checkpoints hold float16). ``config_overrides`` change config values.
        ``compute_type`` (faster-whisper's names, :mod:`weights_bridge.quantization`) sets both: float32,
        float16, bfloat16, or int8 / int8_float32. XLA has no int8 matmul on CPU, so int8 weights are
        dequantized on load (float32 params holding the int8 values times their scales): the same numbers
        as the other backends' int8, at float32 speed and memory. Converting int8 inside the jitted
        program instead measured 3-10x slower per matmul at batch 1.
        """
        dtype = quantization.weights_dtype(compute_type, dtype)
        param_dtype = quantization.weights_dtype(compute_type, param_dtype, dtype_name="param_dtype")
        checkpoint = pretrained.load(
            pretrained_model_name_or_path,
            has_heads=cls.has_classification_heads,
            config=config,
            native=rules.FLAX_PARAMS.column,
            **config_overrides,
        )
        arguments = checkpoint.model_arguments
        if quantization.is_int8(compute_type):
            arguments["tensors"] = quantization.quantize_tensors(checkpoint.tensors)[0]
        return cls.from_canonical(
            **arguments,
            dtype=_resolve_dtype(dtype, checkpoint),
            param_dtype=_resolve_dtype(param_dtype, checkpoint),
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

    def get_memory_footprint(self) -> int:
        """Bytes of the weights the model holds (every leaf of ``params``), as transformers' PyTorch
        ``get_memory_footprint``: compare compute types with it."""
        return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(self.params))

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
        generation_config = getattr(self, "generation_config", None)
        return pretrained.save(
            save_directory,
            canonical_tensors(params, self.config),
            self.config,
            generation_config,
            max_shard_size=max_shard_size,
        )
