"""Model outputs that read like transformers' ``ModelOutput``: ``out.logits``, ``out["logits"]``, ``out[0]``.

Only the fields that are set (not ``None``) count as entries, in field order, so ``out[0]`` and
``out.to_tuple()`` give what transformers returns with ``return_dict=False``. They are plain Python
objects: compiled functions (``generation.py``, ``export.py``) return tensors, not these.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import tensorflow as tf

Tensors = tuple[tf.Tensor, ...]


class KVCache(NamedTuple):
    """The decoder's fixed-size cache, passed in and returned (never mutated in place).

    ``layers``: per decoder layer ``(self_k, self_v, cross_k, cross_v)``, each ``[batch * heads, seq,
    head_dim]``; self-attention entries hold ``max_length`` slots of which the first ``index`` are
    written; cross-attention entries hold the encoder frames, projected once. ``index``: int32 scalar,
    the next write position (and the position id of the next token). A NamedTuple of tensors, so it
    is a ``tf.nest`` structure that ``tf.while_loop`` carries.

    Batch and heads share one axis for the reason whisper_flax's cache does: with a separate batch axis
    of 1, XLA keeps two versions of every written cache and copies them each token.
    """

    layers: tuple[tuple[tf.Tensor, ...], ...]
    index: tf.Tensor


@dataclass(eq=False)
class ModelOutput:
    """Base class: attribute, key and index access over the fields that are not ``None``."""

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self.values())

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:  # like a dict (and like transformers): iterates over keys
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass(eq=False)
class BaseModelOutput(ModelOutput):
    last_hidden_state: tf.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass(eq=False)
class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    last_hidden_state: tf.Tensor | None = None
    past_key_values: KVCache | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


@dataclass(eq=False)
class Seq2SeqModelOutput(ModelOutput):
    last_hidden_state: tf.Tensor | None = None
    past_key_values: KVCache | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: tf.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


@dataclass(eq=False)
class Seq2SeqLMOutput(ModelOutput):
    loss: tf.Tensor | None = None
    logits: tf.Tensor | None = None
    past_key_values: KVCache | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: tf.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


@dataclass(eq=False)
class SequenceClassifierOutput(ModelOutput):
    loss: tf.Tensor | None = None
    logits: tf.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
