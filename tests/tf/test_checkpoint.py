"""whisper_tf checkpoints: canonical round trip, HF ``tf_model.h5`` in both directions, strict errors, and
live moves between backends (whisper_mb.live), all bit-exact."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

from tests.helpers import SMALL_NARROW, assert_same_weights
from weights_bridge import canonical, tf_h5
from whisper_core import GenerationConfig, WhisperConfig
from whisper_mb import backend_of, convert, to_pt
from whisper_mb.registry import KINDS
from whisper_tf import TFWhisperForAudioClassification, TFWhisperForConditionalGeneration, TFWhisperModel


@pytest.fixture(scope="module")
def pt_model():
    import whisper_pt

    torch.manual_seed(0)
    model = whisper_pt.WhisperForConditionalGeneration(WhisperConfig(**SMALL_NARROW)).eval()
    model.generation_config = GenerationConfig(decoder_start_token_id=1, no_timestamps_token_id=90, eos_token_id=0)
    return model


def test_save_and_load_round_trip_is_bit_identical(pt_model, tmp_path):
    directory = pt_model.save_pretrained(tmp_path / "pt")
    ours = TFWhisperForConditionalGeneration.from_pretrained(directory)
    assert ours.generation_config == pt_model.generation_config
    ours.save_pretrained(tmp_path / "tf", max_shard_size=40_000)
    assert (tmp_path / "tf" / "model.safetensors.index.json").is_file()
    assert_same_weights(canonical.load_weights(tmp_path / "tf"), canonical.load_weights(directory))
    assert WhisperConfig.from_pretrained(tmp_path / "tf") == pt_model.config
    base = TFWhisperModel.from_pretrained(directory)
    np.testing.assert_array_equal(base.get_encoder().conv1.kernel.numpy(), ours.get_encoder().conv1.kernel.numpy())
    half = TFWhisperForConditionalGeneration.from_pretrained(directory, dtype="float16")
    assert {v.dtype for v in half.weights} == {"float16"}
    with pytest.raises(ValueError, match="dtype must be one of"):
        TFWhisperForConditionalGeneration.from_pretrained(directory, dtype="int8")


def test_float16_checkpoint_loads_every_weight_widened_exactly(pt_model, tmp_path):
    """A checkpoint stored in float16 (as the converted OpenAI ones are) fills every float32 variable, none
    left as the unfilled memory the model is built with, with exactly its float16 values."""
    config, stored = canonical.load_checkpoint(pt_model.save_pretrained(tmp_path / "pt"))
    half = {name: array.astype(np.float16) for name, array in stored.items()}
    directory = canonical.save_checkpoint(tmp_path / "half", half, config)
    ours = TFWhisperForConditionalGeneration.from_pretrained(directory)
    assert {v.dtype for v in ours.weights} == {"float32"}
    widened = {name: array.astype(np.float32) for name, array in half.items() if name != "proj_out.weight"}
    assert_same_weights(ours.canonical_tensors(), widened)


def test_hf_tf_h5_both_ways(pt_model, tmp_path):
    transformers = pytest.importorskip("transformers")
    native = tmp_path / "native"  # HF's tf_model.h5 alone (written by the bridge) loads into the same variables
    native.mkdir()
    tf_h5.from_canonical(native / tf_h5.TF_WEIGHTS_NAME, pt_model.canonical_tensors(), pt_model.config)
    pt_model.config.save_pretrained(native)
    ours = TFWhisperForConditionalGeneration.from_pretrained(native)
    assert_same_weights(ours.canonical_tensors(), pt_model.canonical_tensors())

    reference = transformers.TFWhisperForConditionalGeneration.from_pretrained(native)
    reference.save_pretrained(tmp_path / "hf")  # transformers' own h5 writer (tf-keras)
    again = TFWhisperForConditionalGeneration.from_pretrained(tmp_path / "hf")
    assert_same_weights(again.canonical_tensors(), pt_model.canonical_tensors())


def test_strict_loading_names_the_problem(pt_model):
    tensors = pt_model.canonical_tensors()
    bad = {**tensors, "model.encoder.conv1.weight": np.zeros((3, 3, 3), np.float32)}
    with pytest.raises(ValueError, match=r"model\.encoder\.conv1\.weight .*shape"):
        TFWhisperForConditionalGeneration.from_canonical(pt_model.config, bad)
    missing = {k: v for k, v in tensors.items() if k != "model.decoder.layer_norm.bias"}
    with pytest.raises(ValueError, match=r"lacks 1 tensors.*model/decoder/layer_norm/beta"):
        TFWhisperForConditionalGeneration.from_canonical(pt_model.config, missing)
    with pytest.raises(ValueError, match=r"does not know.*wibble"):
        TFWhisperForConditionalGeneration.from_canonical(pt_model.config, {**tensors, "wibble": np.zeros(1)})


@pytest.mark.parametrize("kind", KINDS)
def test_live_moves_between_backends_are_exact(kind):
    import whisper_pt

    torch.manual_seed(0)
    model = getattr(whisper_pt, kind)(WhisperConfig(**SMALL_NARROW, num_labels=2)).eval()
    tf_model = convert(model, "tf")
    assert type(tf_model).__name__ == "TF" + kind and backend_of(tf_model) == "tf"
    assert_same_weights(tf_model.canonical_tensors(), model.canonical_tensors())
    back = to_pt(tf_model)
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    flax_model = convert(tf_model, "flax")
    assert_same_weights(convert(flax_model, "tf").canonical_tensors(), model.canonical_tensors())


def test_new_classification_heads_are_initialised(pt_model, tmp_path):
    directory = pt_model.save_pretrained(tmp_path)
    classifier = TFWhisperForAudioClassification.from_pretrained(directory)
    assert classifier.classifier.kernel.shape == (classifier.config.classifier_proj_size, 2)
    np.testing.assert_array_equal(
        classifier.encoder.conv1.kernel.numpy(), np.transpose(pt_model.model.encoder.conv1.weight.detach(), (2, 1, 0))
    )
    assert classifier(tf.random.normal((1, 80, 60))).logits.shape == (1, 2)
