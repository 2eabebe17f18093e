"""TensorFlow's model outputs: whisper_core's classes (:mod:`whisper_core.outputs`) holding tf tensors.

``out.logits``, ``out["logits"]`` and ``out[0]`` read as in transformers. They are plain Python
objects: compiled functions (``generation.py``, ``export.py``) return tensors, not these. The
:class:`KVCache` is a NamedTuple of tensors, so ``tf.while_loop`` carries it as a ``tf.nest`` structure.
"""

from __future__ import annotations

import tensorflow as tf

from whisper_core.outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    KVCache,
    ModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
)

Tensors = tuple[tf.Tensor, ...]

__all__ = [
    "BaseModelOutput",
    "BaseModelOutputWithPastAndCrossAttentions",
    "KVCache",
    "ModelOutput",
    "Seq2SeqLMOutput",
    "Seq2SeqModelOutput",
    "SequenceClassifierOutput",
    "Tensors",
]
