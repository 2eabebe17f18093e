"""whisper_tf ``compute_type`` on a small random checkpoint: int8 weights are the bridge's int8 values
times their scales (dequantized on load, bit-identical), and int8 / float16 / bfloat16 logits stay near
float32 (bounds measured, ~2x room)."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tests.compute_type_helpers import (
    assert_bad_compute_types_refused,
    assert_dequantized_memory_footprint,
    assert_int8_weights_are_dequantized_reference,
    assert_logits_near_float32,
    random_checkpoint,
)
from tests.helpers import small_inputs
from weights_bridge import quantization
from whisper_tf import TFWhisperForConditionalGeneration


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
    assert_int8_weights_are_dequantized_reference(model, float32, checkpoint)


@pytest.mark.parametrize("compute_type", ["int8", "int8_float32", "float16", "bfloat16"])
def test_logits_stay_near_float32(checkpoint, float32, compute_type):
    logits = _logits(TFWhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type=compute_type))
    assert logits.dtype == tf.as_dtype(quantization.float_dtype(compute_type))
    assert_logits_near_float32(logits, _logits(float32), compute_type)


def test_memory_footprint(checkpoint, float32):
    assert_dequantized_memory_footprint(TFWhisperForConditionalGeneration, checkpoint, float32)


def test_bad_compute_types_are_refused(checkpoint):
    assert_bad_compute_types_refused(TFWhisperForConditionalGeneration, checkpoint, "dtype")
