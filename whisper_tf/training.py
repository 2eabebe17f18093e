"""Keras ``fit`` / ``evaluate`` for :class:`~whisper_tf.modeling.TFWhisperForConditionalGeneration`.

The loss is the model's own (labels shifted right into decoder inputs, -100 ignored), so a model
compiles with an optimizer alone and trains on a ``tf.data`` dataset of ``(input_features, labels)``:

    model.compile(optimizer=keras.optimizers.AdamW(1e-5))
    model.fit(tf.data.Dataset.from_tensor_slices((features, labels)).batch(8), epochs=3)

Labels are ``[batch, T]`` token ids (``<|startoftranscript|>`` prefix onwards, padded with -100);
``decoder_start_token_id`` is prepended by the shift. Dropout, LayerDrop and SpecAugment follow the
config in training, as in the other backends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf


class TFWhisperTrainingMixin:
    """``train_step`` and ``test_step`` that take ``(inputs, labels)`` and report ``loss``: ``inputs`` is
    ``input_features``, or a dict of model inputs (``{"input_features": ..., "attention_mask": ...}``,
    the processor's frame mask keeping SpecAugment's time spans on real audio)."""

    def _loss(self, data: Any, training: bool) -> tf.Tensor:
        if not isinstance(data, tuple | list) or len(data) != 2:
            raise ValueError("fit/evaluate take (inputs, labels) pairs: labels are the token ids to predict")
        inputs, labels = data
        if isinstance(inputs, Mapping):
            return self(**inputs, labels=labels, training=training).loss
        return self(inputs, labels=labels, training=training).loss

    def _report(self, loss: tf.Tensor) -> dict[str, tf.Tensor]:
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One optimizer step on the mean token cross-entropy of a batch."""
        with tf.GradientTape() as tape:
            loss = self._loss(data, training=True)
            scaled = self.optimizer.scale_loss(loss)  # loss scaling under a mixed_float16 policy
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        return self._report(loss)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        return self._report(self._loss(data, training=False))
