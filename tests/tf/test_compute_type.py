"""whisper_tf ``compute_type`` on a small random checkpoint: int8 weights are the bridge's int8 values
times their scales (dequantized on load, bit-identical), and int8 / float16 / bfloat16 logits stay near
float32 (bounds measured, ~2x room)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.compute_type_helpers import random_checkpoint, reference_int8
from tests.helpers import max_abs, small_inputs
from weights_bridge import quantization
from whisper_tf import TFWhisperForConditionalGeneration

# max |logits - float32 logits| / max |float32 logits|; measured 0.010 (int8 weights), 8e-4 (float16),
# 7e-3 (bfloat16).
BOUNDS = {"int8": 0.03, "int8_float32": 0.03, "float16": 0.005, "bfloat16": 0.03}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp("random"))


@pytest.fixture(scope="module")
def float32(checkpoint):
    return TFWhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="float32")


def _logits(model):
    features, ids = small_inputs()
    return model(features, decoder_input_ids=ids).logits


def test_int8_weights_are_the_bridge_int8_values_times_scales(checkpoint, float32):
    model = TFWhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="int8")
    reference = reference_int8(checkpoint)
    tensors, original = model.canonical_tensors(), float32.canonical_tensors()
    for name, array in tensors.items():
        expected = reference[name].dequantize() if name in reference else original[name]
        np.testing.assert_array_equal(array, expected, err_msg=name)


@pytest.mark.parametrize("compute_type", ["int8", "int8_float32", "float16", "bfloat16"])
def test_logits_stay_near_float32(checkpoint, float32, compute_type):
    model = TFWhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type=compute_type)
    reference, logits = _logits(float32), _logits(model)
    assert logits.dtype == tf.as_dtype(quantization.float_dtype(compute_type))
    assert np.isfinite(np.asarray(logits, np.float32)).all()
    error = max_abs(logits, reference) / np.abs(np.asarray(reference)).max()
    assert 0 < error <= BOUNDS[compute_type], error


def test_memory_footprint(checkpoint, float32):
    """int8 is dequantized on load, so it holds float32's bytes; half types hold half."""
    for compute_type, factor in (("int8", 1.0), ("float16", 0.5), ("bfloat16", 0.5)):
        model = TFWhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type=compute_type)
        assert model.get_memory_footprint() == factor * float32.get_memory_footprint(), compute_type


def test_bad_compute_types_are_refused(checkpoint):
    with pytest.raises(ValueError, match="choose one of float32, float16, bfloat16, int8, int8_float32"):
        TFWhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="int4")
    with pytest.raises(ValueError, match="not both"):
        TFWhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="int8", dtype="float16")
