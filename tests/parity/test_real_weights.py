"""Every pair of backends on the real tiny.en and base checkpoints and real speech (DESIGN.md §3): logits
within 1e-4 (2e-4 on base: LOGITS_TOL), also against transformers in float64, encoder states within 1e-4
of their scale, loss rel 1e-5, first-step gradients rel 1e-4 (4e-4 on base: GRADIENT_TOL),
identical greedy, beam, timestamp and seeded sampled ids, and the same detected language."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import JFK_TEXT
from whisper_core import WhisperProcessor

from .runners import HALF_TOL, RUNNERS, assert_close, assert_gradients_close, backends, pairs, trainable_gradients

pytestmark = pytest.mark.slow
TOL = 1e-4
KIND = "WhisperForConditionalGeneration"
# First-step gradients, relative error in norm per tensor. On base, the gradient reaching the encoder
# is concentrated on its first frames, and float32 rounding through the six encoder layers shows in
# the first layers' weights. Against float64 whisper_pt (through the encoder, from the jfk loss's
# gradient at its output), the first layer's q_proj gradient is 6.4e-5 off in whisper_pt float32,
# 3.6e-4 in whisper_flax and 4.4e-4 in transformers' own Flax. The gap is XLA CPU's float32 matrix
# products (whisper_flax with float64 products: 2.6e-5; with XLA's YNNPACK fusions off: 1.9e-4), not
# the softmax, GELU or LayerNorm (each in float64 changes nothing). So base is held to 4e-4 there
# instead of DESIGN.md's 1e-4. PyTorch and TensorFlow agree within 1e-4.
GRADIENT_TOL = {"tiny.en": 1e-4, "base": 4e-4}
# Logits, max abs, fixed per checkpoint (not calibrated on the run, so that a loss of precision in one
# backend cannot widen its own tolerance). Measured on the jfk logits (largest |logit| 39 on tiny.en, 45
# on base) against transformers' PyTorch model in float64: on tiny.en every float32 model is within
# 5.1e-5 and the pairs within 5.2e-5 (pt~tf), so DESIGN.md's 1e-4 holds. On base float32 itself is about
# 1e-4 off: transformers in float32 by 1.25e-4, whisper_pt 1.07e-4, whisper_tf 7.4e-5, whisper_flax
# 7.1e-5; the pairs differ by 1.26e-4 (pt~tf), 1.03e-4 (pt~flax) and 7.1e-5 (tf~flax), and transformers'
# float32 model by 1.5e-4 from whisper_tf and whisper_flax. No two float32 implementations can promise
# 1e-4 there, so base is held to 2e-4, 1.6 times the largest pair. For scale: the decoder's final
# layer-norm weights scaled by 1 + 1e-5 in one backend move its logits by 4.4e-4.
LOGITS_TOL = {"tiny.en": 1e-4, "base": 2e-4}


@pytest.fixture(scope="module", params=["tiny.en", "base"])
def checkpoint(request, tiny_en_dir, base_dir, jfk_audio):
    directory = tiny_en_dir if request.param == "tiny.en" else base_dir
    processor = WhisperProcessor.from_pretrained(directory)
    features = processor(jfk_audio, sampling_rate=16000, return_tensors="np").input_features.astype(np.float32)
    labels = np.array([processor.tokenizer(JFK_TEXT)["input_ids"]])
    return request.param, directory, features, labels


@pytest.fixture(scope="module")
def float64_logits(checkpoint):
    """transformers' PyTorch model (DESIGN.md's reference) in float64 on this checkpoint and input: the
    exact logits that every float32 backend approximates."""
    import torch
    from transformers import WhisperForConditionalGeneration as Reference

    _, directory, features, labels = checkpoint
    reference = Reference.from_pretrained(directory).eval().double()
    with torch.no_grad():
        return reference(input_features=torch.from_numpy(features).double(), labels=torch.from_numpy(labels)).logits


@pytest.fixture(scope="module")
def loaded():
    """Models are loaded once per (backend, checkpoint) for the whole module."""
    cache = {}

    def load(name, directory):
        if (name, directory) not in cache:
            cache[(name, directory)] = RUNNERS[name].load(KIND, directory)
        return cache[(name, directory)]

    return load


@pytest.mark.parametrize("pair", pairs())
def test_states_logits_loss_and_gradients(pair, checkpoint, loaded):
    model_name, directory, features, labels = checkpoint
    results, gradients = [], []
    for name in pair:
        model = loaded(name, directory)
        results.append(RUNNERS[name].forward(model, input_features=features, labels=labels))
        gradients.append(trainable_gradients(RUNNERS[name].gradients(model, input_features=features, labels=labels)))
    first, second = results
    # base's encoder residual stream reaches ~500, where float32 itself is 6e-4 off (whisper_pt in float32
    # vs float64: 5.9e-4 on its final states), so encoder states are held to 1e-4 of their largest magnitude.
    states = first["encoder_last_hidden_state"], second["encoder_last_hidden_state"]
    assert_close("encoder states", *states, TOL, relative=True)
    assert_close("logits", first["logits"], second["logits"], LOGITS_TOL[model_name])
    assert abs(float(first["loss"]) - float(second["loss"])) <= 1e-5 * float(second["loss"])
    assert_gradients_close(*gradients, GRADIENT_TOL[model_name])


@pytest.mark.parametrize("name", backends())
def test_float32_logits_against_float64_transformers(name, checkpoint, loaded, float64_logits):
    """Each backend's float32 logits against the exact ones, within the same fixed bound: one backend
    cannot drift alone (the pairs would see it), nor all of them together."""
    model_name, directory, features, labels = checkpoint
    logits = RUNNERS[name].forward(loaded(name, directory), input_features=features, labels=labels)["logits"]
    assert_close(f"{name} float32 logits vs float64", logits, float64_logits.numpy(), LOGITS_TOL[model_name])


GENERATE = {
    "greedy": {},
    "beam": {"num_beams": 4},
    "timestamps": {"return_timestamps": True},
}


@pytest.mark.parametrize("pair", pairs())
@pytest.mark.parametrize("mode", sorted(GENERATE))
def test_generate_ids_are_identical(pair, mode, checkpoint, loaded):
    model_name, directory, features, _ = checkpoint
    language = {} if model_name.endswith(".en") else {"language": "en"}
    ids = [
        RUNNERS[name].generate(loaded(name, directory), features, max_new_tokens=48, **language, **GENERATE[mode])
        for name in pair
    ]
    np.testing.assert_array_equal(ids[0], ids[1])


@pytest.mark.parametrize("pair", pairs())
def test_one_seed_samples_the_same_ids(pair, checkpoint, loaded):
    """One seed gives the same sampled ids in every backend (``seed=s``, JAX's ``PRNGKey(s)``: one table of
    draws, :func:`~whisper_core.decoding.sampling_draws`), jfk in eight rows that draw apart, at temperature
    0.5 over the whole vocabulary and at 1 over the top 50; another seed gives other ids. (At temperature 1
    over the whole vocabulary a draw now and then lands within float rounding of the edge between two
    tail tokens, each far below 1e-6, and backends pick neighbours: 3 of 24 rows of 48 tokens on tiny.en,
    1 of 24 on base, 2026-12-07.)"""
    model_name, directory, features, _ = checkpoint
    language = {} if model_name.endswith(".en") else {"language": "en"}
    rows = np.repeat(features, 8, axis=0)

    def sample(name: str, seed: int, **options) -> np.ndarray:
        runner = RUNNERS[name]
        options |= {"max_new_tokens": 48, "do_sample": True, **language, **runner.seeded(seed)}
        return runner.generate(loaded(name, directory), rows, **options)

    for options in ({"temperature": 0.5, "top_k": 0}, {"temperature": 1.0, "top_k": 50}):
        first, second = (sample(name, 7, **options) for name in pair)
        np.testing.assert_array_equal(first, second)
        assert len({tuple(row) for row in first}) > 1  # the rows drew apart
        other = sample(pair[0], 8, **options)
        assert other.shape != first.shape or not np.array_equal(other, first)


@pytest.mark.parametrize("pair", pairs())
def test_language_detection_agrees(pair, checkpoint, loaded):
    model_name, directory, features, _ = checkpoint
    if model_name.endswith(".en"):  # nothing to detect: every backend says so
        for name in pair:
            with pytest.raises(ValueError, match="English-only"):
                RUNNERS[name].detect_language(loaded(name, directory), features)
        return
    found = [RUNNERS[name].detect_language(loaded(name, directory), features)[0] for name in pair]
    assert max(found[0], key=found[0].get) == max(found[1], key=found[1].get) == "en"
    assert max(abs(found[0][code] - found[1][code]) for code in found[0]) <= TOL
    ids = [RUNNERS[name].generate(loaded(name, directory), features, max_new_tokens=48) for name in pair]
    np.testing.assert_array_equal(ids[0], ids[1])  # language detected inside generate


@pytest.mark.parametrize("pair", pairs())
def test_base_model_hidden_states_and_attentions(pair, checkpoint):
    """``WhisperModel`` (no LM head) on the real weights: decoder and encoder states layer by layer, and on
    tiny.en every attention map (base's would be 0.4 GB per backend), on real speech and its transcript."""
    model_name, directory, features, labels = checkpoint
    attentions = model_name == "tiny.en"
    results = [
        RUNNERS[name].forward(
            RUNNERS[name].load("WhisperModel", directory),
            input_features=features,
            decoder_input_ids=labels,
            output_hidden_states=True,
            output_attentions=attentions,
        )
        for name in pair
    ]
    first, second = results
    assert_close("decoder states", first["last_hidden_state"], second["last_hidden_state"], TOL, relative=True)
    for key in ("encoder_hidden_states", "decoder_hidden_states"):
        assert_close(key, first[key], second[key], TOL, relative=True)
    if attentions:
        for key in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
            assert_close(key, first[key], second[key], TOL)


@pytest.mark.parametrize("pair", pairs())
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_on_real_weights(pair, dtype, tiny_en_dir, jfk_audio):
    """tiny.en in float16 and bfloat16 on real speech: each backend's logits stay within HALF_TOL of its
    float32 logits (relative to their largest magnitude), and the two backends within HALF_TOL of each other."""
    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    features = processor(jfk_audio, sampling_rate=16000, return_tensors="np").input_features.astype(np.float32)
    labels = np.array([processor.tokenizer(JFK_TEXT)["input_ids"]])
    half = []
    for name in pair:
        runner = RUNNERS[name]
        inputs = {"input_features": features, "labels": labels}
        full = runner.forward(runner.load(KIND, tiny_en_dir), **inputs)["logits"]
        reduced = np.asarray(runner.forward(runner.load(KIND, tiny_en_dir, dtype), **inputs)["logits"], np.float32)
        scale = float(np.abs(full).max())
        assert np.isfinite(reduced).all()
        assert_close(f"{name} {dtype} vs float32", reduced / scale, full / scale, HALF_TOL[dtype])
        half.append(reduced / scale)
    assert_close(f"{dtype} between backends", half[0], half[1], HALF_TOL[dtype])


@pytest.fixture(scope="module")
def classifiers(checkpoint):
    """``WhisperForAudioClassification`` on each backend: the real encoder, one weighted-sum head (drawn
    once by whisper_pt, with non-uniform layer weights) handed to the others as canonical tensors."""
    import torch

    import whisper_flax
    import whisper_pt
    import whisper_tf

    _, directory, _, _ = checkpoint
    torch.manual_seed(0)
    pt = whisper_pt.WhisperForAudioClassification.from_pretrained(
        directory, num_labels=3, use_weighted_layer_sum=True, classifier_proj_size=32
    )
    with torch.no_grad():
        pt.layer_weights.copy_(torch.linspace(-0.5, 0.5, pt.layer_weights.numel()))
    tensors, config = pt.canonical_tensors(), pt.config
    return {
        "pt": pt,
        "tf": whisper_tf.TFWhisperForAudioClassification.from_canonical(config, tensors),
        "flax": whisper_flax.FlaxWhisperForAudioClassification.from_canonical(config, tensors),
    }


@pytest.mark.parametrize("pair", pairs())
def test_audio_classification_on_the_real_encoder(pair, checkpoint, classifiers):
    """Logits (through every layer's states, weighted), loss and first-step gradients of the head."""
    _, _, features, _ = checkpoint
    labels = np.array([2])
    results, gradients = [], []
    for name in pair:
        inputs = {"input_features": features, "labels": labels}
        results.append(RUNNERS[name].forward(classifiers[name], **inputs))
        gradients.append(RUNNERS[name].gradients(classifiers[name], **inputs))
    first, second = results
    assert_close("logits", first["logits"], second["logits"], TOL, relative=True)
    assert abs(float(first["loss"]) - float(second["loss"])) <= 1e-5 * float(second["loss"])
    head = {name for name in gradients[0] if name.startswith(("projector.", "classifier.", "layer_weights"))}
    assert head == {"projector.weight", "projector.bias", "classifier.weight", "classifier.bias", "layer_weights"}
    assert_gradients_close({n: gradients[0][n] for n in head}, {n: gradients[1][n] for n in head}, 1e-4)
