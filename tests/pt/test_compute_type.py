"""whisper_pt ``compute_type`` on a small random checkpoint: int8 modules hold exactly the bridge's int8
values and scales, and int8 / float16 / bfloat16 logits stay near float32 (bounds measured, ~2x room)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

from tests.compute_type_helpers import random_checkpoint, reference_int8
from tests.helpers import max_abs, small_inputs
from weights_bridge import quantization
from whisper_pt import WhisperForConditionalGeneration, WhisperModel

# max |logits - float32 logits| / max |float32 logits|; measured 0.023 (int8: weights and, per call,
# activations quantized), 8e-4 (float16), 7e-3 (bfloat16).
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
        weight = module.weight()
        np.testing.assert_array_equal(weight.int_repr().numpy(), int8.values, err_msg=path)
        np.testing.assert_array_equal(weight.q_per_channel_scales().numpy(), int8.scales.astype(np.float64))
        np.testing.assert_array_equal(weight.q_per_channel_zero_points().numpy(), 0)
        np.testing.assert_allclose(weight.dequantize().numpy(), int8.dequantize(), rtol=1e-7, atol=0)
    assert sum(isinstance(m, Int8Linear) for m in modules.values()) == len(reference)
    # the embedding lookup reads the tied projection's dequantized values, as in TF and Flax
    np.testing.assert_array_equal(
        model.model.decoder.embed_tokens.weight.detach().numpy(), reference[quantization.OUTPUT_PROJECTION].dequantize()
    )


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
    """int8: each quantized Linear's float32 weight gives way to int8 values and float32 scales; the tied
    projection gets an int8 copy beside the (float32) embedding. Half types halve everything."""
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


def test_bad_compute_types_are_refused(checkpoint):
    with pytest.raises(ValueError, match="choose one of float32, float16, bfloat16, int8, int8_float32"):
        WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="int4")
    with pytest.raises(ValueError, match="not both"):
        WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="int8", torch_dtype="float16")
    with pytest.raises(ValueError, match="CPU integer kernels only"):
        WhisperForConditionalGeneration.from_pretrained(checkpoint, compute_type="int8", device="cuda")
