"""weights_bridge.quantization: the int8 arithmetic every backend's ``compute_type="int8"`` runs, and the
compute-type names."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import SMALL
from weights_bridge import engine, quantization
from whisper_core.config import WhisperConfig


def test_round_trip_is_within_half_a_step_per_row():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 48)).astype(np.float32) * rng.uniform(1e-4, 10, size=(64, 1)).astype(np.float32)
    weight[5, 7] = 300.0  # an outlier coarsens its own row only
    q = quantization.quantize(weight)
    assert q.values.dtype == np.int8 and q.scales.dtype == np.float32 and q.scales.shape == (64,)
    assert np.abs(q.values.astype(np.int32)).max() <= 127
    np.testing.assert_array_equal(np.abs(q.values).max(axis=1), 127)  # each row's largest entry hits the end
    np.testing.assert_allclose(q.scales, np.abs(weight).max(axis=1) / 127, rtol=1e-6)  # 1 / (127 / max), as CT2
    error = np.abs(weight - q.dequantize())
    # half a step, plus the float32 rounding of the scale and of the product
    assert np.all(error <= q.scales[:, None] / 2 * (1 + 1e-6) + 1e-7 * np.abs(weight))
    assert q.scales[5] == pytest.approx(300 / 127, rel=1e-6)  # set by the outlier, for its row alone


def test_zero_rows_get_scale_one_and_come_back_exactly():
    weight = np.zeros((3, 4), np.float32)
    weight[1] = [0.5, -1.0, 0.25, 0.0]
    q = quantization.quantize(weight)
    np.testing.assert_array_equal(q.scales[[0, 2]], [1.0, 1.0])
    np.testing.assert_array_equal(q.values[[0, 2]], 0)
    np.testing.assert_array_equal(q.values[1], [64, -127, 32, 0])
    np.testing.assert_array_equal(q.dequantize()[[0, 2]], 0.0)
    assert q.nbytes == 12 + 3 * 4


def test_dequantize_is_int8_times_float32_scale():
    values = np.array([[127, -127, 3]], np.int8)
    scales = np.array([0.1], np.float32)
    out = quantization.dequantize(values, scales)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values.astype(np.float32) * np.float32(0.1))


def test_quantized_names_are_every_linear_weight_and_the_tied_projection():
    config = WhisperConfig(**SMALL)
    names = list(engine.canonical_shapes(config))
    quantized = set(quantization.quantized_names(names))
    layers = SMALL["encoder_layers"] * 6 + SMALL["decoder_layers"] * 10  # q, k, v, out (x2 in the decoder), fc1, fc2
    assert len(quantized) == layers + 1
    assert quantization.OUTPUT_PROJECTION in quantized
    assert "model.decoder.layers.1.encoder_attn.k_proj.weight" in quantized
    assert "model.encoder.layers.0.fc2.weight" in quantized
    for name in quantized - {quantization.OUTPUT_PROJECTION}:
        assert name.endswith(".weight") and ("_proj." in name or ".fc" in name), name
    left = set(names) - quantized
    assert not any(name.endswith(("q_proj.weight", "fc1.weight")) for name in left)
    assert {"model.encoder.conv1.weight", "model.decoder.embed_positions.weight"} <= left
    assert not any(n.endswith(".bias") for n in quantized)


def test_an_untied_projection_is_quantized_instead_of_the_embedding():
    names = [quantization.OUTPUT_PROJECTION, quantization.UNTIED_OUTPUT_PROJECTION, "model.encoder.layers.0.fc1.bias"]
    assert quantization.quantized_names(names) == [quantization.UNTIED_OUTPUT_PROJECTION]


def test_quantize_tensors_replaces_only_the_quantized_ones():
    rng = np.random.default_rng(1)
    tensors = {
        "model.encoder.layers.0.fc1.weight": rng.standard_normal((8, 4)).astype(np.float32),
        "model.encoder.layers.0.fc1.bias": rng.standard_normal(8).astype(np.float32),
    }
    dequantized, int8 = quantization.quantize_tensors(tensors)
    assert list(int8) == ["model.encoder.layers.0.fc1.weight"]
    np.testing.assert_array_equal(
        dequantized["model.encoder.layers.0.fc1.weight"], int8["model.encoder.layers.0.fc1.weight"].dequantize()
    )
    assert dequantized["model.encoder.layers.0.fc1.bias"] is tensors["model.encoder.layers.0.fc1.bias"]


@pytest.mark.parametrize(
    ("compute_type", "dtype", "int8"),
    [("float32", "float32", False), ("float16", "float16", False), ("bfloat16", "bfloat16", False),
     ("int8", "float32", True), ("int8_float32", "float32", True)],
)  # fmt: skip
def test_compute_types(compute_type, dtype, int8):
    assert quantization.float_dtype(compute_type) == dtype
    assert quantization.is_int8(compute_type) is int8
    assert quantization.weights_dtype(compute_type, None) == dtype


def test_unknown_compute_type_names_the_choices():
    for call in (quantization.check_compute_type, quantization.float_dtype, quantization.is_int8):
        with pytest.raises(
            ValueError,
            match=r"unknown compute_type 'int4': choose one of float32, float16, bfloat16, int8, int8_float32",
        ):
            call("int4")


def test_compute_type_and_dtype_together_are_refused():
    assert quantization.weights_dtype(None, "float16") == "float16"
    with pytest.raises(ValueError, match="not both"):
        quantization.weights_dtype("int8", "float16", dtype_name="torch_dtype")


@pytest.mark.parametrize("shape", [(24, 16), (8, 4, 3)])
def test_int8_is_ctranslate2s_own_to_the_bit(shape):
    """CTranslate2's converter (its spec's quantization) gives the same int8 values and factors."""
    common_spec = pytest.importorskip("ctranslate2.specs.common_spec")
    rng = np.random.default_rng(1)
    weight = rng.standard_normal(shape).astype(np.float32) * rng.uniform(
        1e-3, 5, size=(shape[0],) + (1,) * (len(shape) - 1)
    )
    weight = weight.astype(np.float32)
    weight[2] = 0.0  # an all-zero row
    spec = common_spec.LinearSpec() if len(shape) == 2 else common_spec.Conv1DSpec()
    spec.weight = weight.copy()
    spec.bias = np.zeros(shape[0], np.float32)
    spec.validate()  # wraps the arrays as the converter's variables
    spec.optimize("int8")
    values, factors = quantization.ct2_int8(weight)
    np.testing.assert_array_equal(values, spec.weight.numpy())
    np.testing.assert_array_equal(factors, spec.weight_scale.numpy())
    if len(shape) == 2:
        q = quantization.quantize(weight)
        np.testing.assert_array_equal(q.values, spec.weight.numpy())
