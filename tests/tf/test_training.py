"""Keras fit/evaluate on TFWhisperForConditionalGeneration: the model's own loss, compiled train step."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from whisper_core import WhisperConfig
from whisper_tf import TFWhisperForConditionalGeneration

SMALL = dict(
    vocab_size=64, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
    decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=20,
    max_target_positions=16, decoder_start_token_id=1, pad_token_id=0, bos_token_id=0, eos_token_id=2,
    dropout=0.1, decoder_layerdrop=0.2, apply_spec_augment=True, mask_time_prob=0.1, mask_time_length=4,
)  # fmt: skip


def dataset() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((8, 80, 40)).astype(np.float32)
    labels = rng.integers(3, SMALL["vocab_size"], size=(8, 6)).astype(np.int32)
    labels[::2, -2:] = -100  # padded labels are ignored
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(4)


def test_fit_lowers_the_loss():
    keras.utils.set_random_seed(0)
    model = TFWhisperForConditionalGeneration(WhisperConfig(**SMALL))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = model.evaluate(dataset(), verbose=0)
    history = model.fit(dataset(), epochs=15, verbose=0)
    after = model.evaluate(dataset(), verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert after < 0.75 * before  # 4.2 -> 2.5 here
    features, labels = next(iter(dataset()))
    assert abs(float(model(features, labels=labels).loss) - model.evaluate(dataset().take(1), verbose=0)) < 1e-5


def test_fit_needs_labels():
    model = TFWhisperForConditionalGeneration(WhisperConfig(**SMALL))
    model.compile(optimizer="adam")
    features = tf.data.Dataset.from_tensor_slices(np.zeros((2, 80, 40), np.float32)).batch(2)
    with pytest.raises(ValueError, match="labels"):
        model.fit(features, verbose=0)
