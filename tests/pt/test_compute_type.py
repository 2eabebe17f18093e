"""whisper_pt ``compute_type`` on a small random checkpoint: int8 modules hold exactly the bridge's int8
values and scales, and int8 / float16 / bfloat16 logits stay near float32 (bounds measured, ~2x room)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.compute_type_helpers import random_checkpoint, reference_int8
from tests.helpers import max_abs, small_inputs
from weights_bridge import quantization
from whisper_pt import WhisperForConditionalGeneration, WhisperModel
from whisper_pt.int8 import Int8Linear

# max |logits - float32 logits| / max |float32 logits|; measured 0.023 with torch's dynamic Linear (int8:
# weights and, per call, activations quantized), 8e-4 (float16), 7e-3 (bfloat16).
BOUNDS = {"int8": 0.05, "int8_float32": 0.05, "float16": 0.005, "bfloat16": 0.03}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp("random"))


@pytest.fixture(scope="module")
def float32(checkpoint):
    return WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="float32")


def _logits(model, dtype=torch.float32):
    features, ids = small_inputs()
    with torch.no_grad():
        out = model(torch.from_numpy(features).to(dtype), decoder_input_ids=torch.from_numpy(ids).long())
    return out.logits


def test_int8_modules_hold_the_bridge_int8_values_and_scales(checkpoint):
    model = WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="int8")
    reference = reference_int8(checkpoint)
    modules = dict(model.named_modules())
    for name, int8 in reference.items():
        path = "proj_out" if name == quantization.OUTPUT_PROJECTION else name.removesuffix(".weight")
        module = modules[path]
        assert isinstance(module, Int8Linear), path
        np.testing.assert_array_equal(module.weight_values.numpy(), int8.values, err_msg=path)
        np.testing.assert_array_equal(module.weight_scales.numpy(), int8.scales, err_msg=path)
    assert sum(isinstance(m, Int8Linear) for m in modules.values()) == len(reference)
    # the embedding lookup reads the tied projection's dequantized values, as in TF and Flax
    np.testing.assert_array_equal(
        model.model.decoder.embed_tokens.weight.detach().numpy(), reference[quantization.OUTPUT_PROJECTION].dequantize()
    )


def test_int8_linear_multiplies_as_ctranslate2():
    """Each input row is quantized at 127 / its absolute maximum (rounded to nearest), multiplied in
    integers and scaled back by both factors: the same as the float product of the two dequantized
    operands, up to float32 rounding; an all-zero row gives the bias; shapes [..., in] keep their lead."""
    rng = np.random.default_rng(0)
    values = rng.integers(-127, 128, (24, 40)).astype(np.int8)
    scales = rng.uniform(1e-3, 1e-2, 24).astype(np.float32)
    bias = rng.standard_normal(24).astype(np.float32)
    linear = Int8Linear(torch.from_numpy(values), torch.from_numpy(scales), torch.from_numpy(bias))
    x = rng.standard_normal((2, 3, 40)).astype(np.float32) * 5
    x[0, 1] = 0.0
    rows = x.reshape(-1, 40).astype(np.float64)
    peak = np.abs(rows).max(axis=1, keepdims=True)
    factors = 127.0 / np.maximum(peak, 1e-30)
    expected = (np.rint(rows * factors) / factors) @ (values * scales[:, None].astype(np.float64)).T + bias
    out = linear(torch.from_numpy(x))
    assert out.shape == (2, 3, 24) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy().reshape(-1, 24), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[0, 1].numpy(), bias)
    with pytest.raises(ValueError, match="int8 values"):
        Int8Linear(torch.zeros(3, 4), torch.ones(3), None)


def test_int8_without_a_projection(checkpoint):
    """WhisperModel has no output projection: its Linear layers are int8, its embedding the dequantized one."""
    model = WhisperModel.from_pretrained(checkpoint, compute_type="int8")
    assert isinstance(model.decoder.layers[0].fc1, Int8Linear)


@pytest.mark.parametrize("compute_type", ["int8", "int8_float32", "float16", "bfloat16"])
def test_logits_stay_near_float32(checkpoint, float32, compute_type):
    model = WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type=compute_type)
    dtype = getattr(torch, quantization.float_dtype(compute_type))
    assert model.dtype == dtype
    reference, logits = _logits(float32), _logits(model, dtype)
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    error = max_abs(logits.float(), reference) / reference.abs().max().item()
    assert 0 < error <= BOUNDS[compute_type], error


def test_memory_footprint(checkpoint, float32):
    """int8: each quantized Linear's float32 weight gives way to int8 values and float32 scales (its bias stays
    float32); the tied projection gets an int8 copy beside the (float32) embedding. Half types halve
    everything."""
    reference = reference_int8(checkpoint)
    linear = [w for name, w in reference.items() if name != quantization.OUTPUT_PROJECTION]
    expected = (
        float32.get_memory_footprint()
        - sum(4 * w.values.size for w in linear)
        + sum(w.nbytes for w in reference.values())
    )
    int8 = WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="int8")
    assert int8.get_memory_footprint() == expected < float32.get_memory_footprint()
    half = WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="bfloat16")
    assert half.get_memory_footprint() * 2 == float32.get_memory_footprint()


def test_an_int8_model_is_not_saved(checkpoint, tmp_path):
    model = WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="int8")
    with pytest.raises(ValueError, match="load the checkpoint in float32 to save it"):
        model.save_pretrained(tmp_path)


@pytest.mark.parametrize("compute_type", ["float32", "int8"])
def test_weights_that_do_not_fit_the_config_are_refused_by_name(checkpoint, compute_type):
    """int8 weights go into their modules before the float ones are checked: a mismatch is named either way."""
    with pytest.raises(ValueError, match=r"layers\.0\.fc1\.(weight|bias) has shape"):
        WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type=compute_type, decoder_ffn_dim=8)


def test_bad_compute_types_are_refused(checkpoint):
    with pytest.raises(ValueError, match="choose one of float32, float16, bfloat16, int8, int8_float32"):
        WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="int4")
    with pytest.raises(ValueError, match="not both"):
        WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="int8", torch_dtype="float16")
    with pytest.raises(ValueError, match="CPU integer kernels only"):
        WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="int8", device="cuda")
