"""A small random checkpoint on disk for the ``compute_type`` tests of every backend, and what its int8
weights must be (the bridge's NumPy reference). Imports no backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import SMALL
from weights_bridge import engine, pretrained, quantization
from whisper_core.config import WhisperConfig


def random_checkpoint(directory: Path, seed: int = 0) -> Path:
    """``SMALL`` with N(0, 1/sqrt(fan_in)) matrices (outputs depend on the input) and a few all-zero
    rows in one Linear weight (the scale-1 case), written as a canonical checkpoint."""
    config = WhisperConfig(**SMALL)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in engine.canonical_shapes(config).items():
        scale = 1.0 / np.sqrt(shape[-1]) if len(shape) >= 2 else 0.1
        tensors[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    tensors["model.decoder.layers.0.fc1.weight"][:3] = 0.0
    return pretrained.save(directory, tensors, config, None)


def reference_int8(directory: Path) -> dict[str, quantization.Int8Weight]:
    """The bridge's int8 weights of the checkpoint in ``directory``, by canonical name."""
    checkpoint = pretrained.load(directory, has_heads=False)
    return quantization.quantize_tensors(checkpoint.tensors)[1]


# max |logits - float32 logits| / max |float32 logits| where int8 weights are dequantized on load (TF,
# Flax); measured 0.010 (int8), 8e-4 (float16), 7e-3 (bfloat16): bounds with ~2x room.
DEQUANTIZED_BOUNDS = {"int8": 0.03, "int8_float32": 0.03, "float16": 0.005, "bfloat16": 0.03}


def assert_int8_weights_are_dequantized_reference(model: Any, float32: Any, checkpoint: Path) -> None:
    """A backend that dequantizes on load holds the bridge's int8 values times their scales, bit for
    bit, and float32's weights everywhere else."""
    reference = reference_int8(checkpoint)
    tensors, original = model.canonical_tensors(), float32.canonical_tensors()
    for name, array in tensors.items():
        expected = reference[name].dequantize() if name in reference else original[name]
        np.testing.assert_array_equal(array, expected, err_msg=name)


def assert_logits_near_float32(logits: Any, reference: Any, compute_type: str) -> None:
    """``logits`` of a ``compute_type`` model, finite and within the measured bound of float32's."""
    logits, reference = np.asarray(logits, np.float32), np.asarray(reference, np.float32)
    assert np.isfinite(logits).all()
    error = np.abs(logits - reference).max() / np.abs(reference).max()
    assert 0 < error <= DEQUANTIZED_BOUNDS[compute_type], error


def assert_dequantized_memory_footprint(model_class: Any, checkpoint: Path, float32: Any) -> None:
    """int8 is dequantized on load, so it holds float32's bytes; half types hold half."""
    for compute_type, factor in (("int8", 1.0), ("float16", 0.5), ("bfloat16", 0.5)):
        model = model_class.from_pretrained(checkpoint, compute_type=compute_type)
        assert model.get_memory_footprint() == factor * float32.get_memory_footprint(), compute_type


def assert_bad_compute_types_refused(model_class: Any, checkpoint: Path, dtype_keyword: str) -> None:
    """An unknown name, and a compute type given beside an explicit dtype, are refused by name."""
    with pytest.raises(ValueError, match="choose one of float32, float16, bfloat16, int8, int8_float32"):
        model_class.from_pretrained(checkpoint, compute_type="int4")
    with pytest.raises(ValueError, match="not both"):
        model_class.from_pretrained(checkpoint, compute_type="int8", **{dtype_keyword: "float16"})
