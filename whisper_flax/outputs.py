"""Flax's model outputs: whisper_core's classes (:mod:`whisper_core.outputs`) holding JAX arrays.

``out.logits``, ``out["logits"]`` and ``out[0]`` read as in transformers. Every output class is
registered here as a JAX pytree whose children are all its fields (``None`` = no leaves), so
``jax.jit`` can return it; the :class:`KVCache` is a NamedTuple, a pytree already. The classes are
whisper_core's, shared with the other backends: in a process that imports this module they are
pytrees for every backend, which only matters to JAX.
"""

from __future__ import annotations

from dataclasses import fields

import jax

from whisper_core.outputs import (
    OUTPUT_CLASSES,
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    KVCache,
    ModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
)

Arrays = tuple[jax.Array, ...]

for _output_class in OUTPUT_CLASSES:
    jax.tree_util.register_dataclass(_output_class, data_fields=[f.name for f in fields(_output_class)], meta_fields=[])

__all__ = [
    "Arrays",
    "BaseModelOutput",
    "BaseModelOutputWithPastAndCrossAttentions",
    "CausalLMOutputWithCrossAttentions",
    "KVCache",
    "ModelOutput",
    "Seq2SeqLMOutput",
    "Seq2SeqModelOutput",
    "SequenceClassifierOutput",
]
