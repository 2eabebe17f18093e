"""``from_pretrained`` / ``save_pretrained`` for the TensorFlow models, through :mod:`weights_bridge`.

The bridge reads every supported checkpoint layout into canonical (HF PyTorch) names, checks names
and shapes strictly and matches them with the model's Keras variables
(:data:`weights_bridge.rules.KERAS_VARIABLES`: a variable's path below the model's own name is its
``hf_tf`` name without Keras 2's ``:0``, the layout permuted as the table says); this module assigns
those arrays and reads them back for saving. Canonical names belong to
``TFWhisperForConditionalGeneration``; ``TFWhisperModel`` has the same ``model/`` level (as in
transformers' TF code), and ``TFWhisperForAudioClassification`` takes the encoder plus heads of its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from weights_bridge import pretrained, quantization, rules
from whisper_core.config import WhisperConfig
from whisper_core.generation_config import GenerationConfig

DTYPES = (*pretrained.WEIGHT_DTYPES, "mixed_float16", "mixed_bfloat16")


def _resolve_dtype(dtype: str | None, checkpoint: pretrained.Pretrained) -> str:
    """float32 unless asked; "auto" takes the checkpoint's own dtype (often float16)."""
    dtype = checkpoint.dtype(dtype)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES} or 'auto', got {dtype!r}")
    return dtype


def model_variables(model: Any) -> dict[str, Any]:
    """The model's variables by path below the model's own name (``model/encoder/conv1/kernel``)."""
    own = f"{model.name}/"
    return {variable.path.removeprefix(own): variable for variable in model.weights}


def load_variables(model: Any, tensors: dict[str, np.ndarray], source: str) -> None:
    """Assign canonical ``tensors`` to ``model``'s variables (cast to their dtype); every variable must be
    given (except new classification heads, left as initialised) and every shape must match, all
    checked before anything is assigned."""
    variables = model_variables(model)
    shapes = {path: tuple(variable.shape) for path, variable in variables.items()}
    arrays = pretrained.match_parameters(
        tensors, rules.KERAS_VARIABLES, shapes, model.config, source=source, model=type(model).__name__
    )
    for path, array in arrays.items():
        variable = variables[path]
        # Cast by TensorFlow, after its one copy of the array: NumPy widens float16 (how checkpoints such as
        # base are stored) several times slower, and a NumPy cast is one more copy of the weights. Loading
        # base: 0.36-0.58 s to assign against 0.90-1.40 s with NumPy's cast (2026-12-07).
        variable.assign(tf.cast(tf.constant(array), variable.dtype))


def canonical_tensors(model: Any, values: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """``model``'s variables under canonical names and layouts (the inverse of :func:`load_variables`).

    ``values`` (variable path -> tensor, e.g. gradients from a ``GradientTape`` keyed like
    :func:`model_variables`) are converted instead of the variables themselves. bfloat16 has no NumPy
    dtype, so bfloat16 weights come out as float32 (exactly representable).
    """
    variables = model_variables(model) if values is None else values
    arrays = {path: _to_numpy(variable) for path, variable in variables.items()}
    return pretrained.canonical_tensors(arrays, rules.KERAS_VARIABLES, model.config)


class CheckpointMixin:
    """``from_pretrained`` and ``save_pretrained`` with transformers' signatures."""

    # A model with heads of its own (audio classification) loads any checkpoint of the same encoder.
    has_classification_heads: ClassVar[bool] = False

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        dtype: str | None = None,
        config: WhisperConfig | None = None,
        compute_type: str | None = None,
        **config_overrides: Any,
    ) -> Any:
        """Load a checkpoint directory (canonical safetensors, sharded, HF ``pytorch_model.bin`` or
        ``tf_model.h5``) or hub id.

        Weights are cast to ``dtype`` (a Keras dtype policy; float32 by default, "auto" = as stored: the
        converted OpenAI checkpoints hold float16). ``config_overrides`` change config values.
        ``compute_type`` (faster-whisper's names, :mod:`weights_bridge.quantization`) replaces the dtype:
        float32, float16, bfloat16, or int8 / int8_float32. TensorFlow has no int8 matmul on CPU, so int8
        weights are dequantized on load (float32 variables holding the int8 values times their scales):
        the same numbers as the other backends' int8, at float32 speed and memory. Converting int8 inside
        the compiled program instead measured 1.7-4x slower per matmul at batch 1.
        """
        dtype = quantization.weights_dtype(compute_type, dtype)
        checkpoint = pretrained.load(
            pretrained_model_name_or_path,
            has_heads=cls.has_classification_heads,
            config=config,
            native=rules.KERAS_VARIABLES.column,
            **config_overrides,
        )
        arguments = checkpoint.model_arguments
        if quantization.is_int8(compute_type):
            arguments["tensors"] = quantization.quantize_tensors(checkpoint.tensors)[0]
        return cls.from_canonical(**arguments, dtype=_resolve_dtype(dtype, checkpoint))

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
        with pretrained.building_for_checkpoint(cls.has_classification_heads):
            model = cls(config, dtype=dtype)
        load_variables(model, tensors, source)
        if generation_config is not None and hasattr(model, "generation_config"):
            model.generation_config = generation_config
        return model

    def get_memory_footprint(self) -> int:
        """Bytes of the weights the model holds (every variable), as transformers' PyTorch
        ``get_memory_footprint``: compare compute types with it."""
        return sum(int(np.prod(variable.shape)) * tf.as_dtype(variable.dtype).size for variable in self.weights)

    def canonical_tensors(self, values: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """The weights (or ``values`` keyed by variable path, such as gradients) under canonical names and
        layouts, as NumPy arrays."""
        return canonical_tensors(self, values)

    def save_pretrained(self, save_directory: str | os.PathLike, *, max_shard_size: int | None = None) -> Path:
        """Write config.json, generation_config.json (when the model has one) and canonical model.safetensors
        (sharded above ``max_shard_size`` bytes), each file atomically."""
        if any(variable.dtype == "bfloat16" for variable in self.weights):
            raise ValueError("bfloat16 weights cannot be written through NumPy safetensors yet: cast them first")
        generation_config = getattr(self, "generation_config", None)
        return pretrained.save(
            save_directory, canonical_tensors(self), self.config, generation_config, max_shard_size=max_shard_size
        )


def _to_numpy(variable: Any) -> np.ndarray:
    array = np.asarray(tf.convert_to_tensor(variable))  # gradients of embeddings come as IndexedSlices
    return array.astype(np.float32) if array.dtype.name == "bfloat16" else array
