"""Model outputs that read like transformers' ``ModelOutput``: ``out.logits``, ``out["logits"]``, ``out[0]``.

Only the fields that are set (not ``None``) count as entries, in field order, so ``out[0]`` and
``out.to_tuple()`` give what transformers returns with ``return_dict=False``. Every output class
is a JAX pytree, so ``jax.jit`` can return it; the KV cache is a pytree too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import jax

Arrays = tuple[jax.Array, ...]


class KVCache(NamedTuple):
    """The decoder's fixed-size cache, passed in and returned (never mutated in place).

    ``layers``: per decoder layer ``(self_k, self_v, cross_k, cross_v)``, each ``[batch * heads, seq,
    head_dim]``; self-attention entries hold ``max_length`` slots of which the first ``index`` are
    written; cross-attention entries hold the encoder frames, projected once. ``index``: int32 scalar,
    the next write position (and the position id of the next token).

    Batch and heads share one axis so that, at batch 1, the step's cache write and the attention
    products that read it see the same shape: with a separate batch axis of 1, XLA drops it for the
    products and then keeps two versions of every written cache, copying each one four times per token
    (48 copies of 0.9 MB per token for base, about 2 ms).
    """

    layers: tuple[tuple[jax.Array, ...], ...]
    index: jax.Array


def _pytree(cls: type) -> type:
    """Register a output dataclass as a pytree whose children are all its fields (``None`` = no leaves)."""
    names = [f.name for f in fields(cls)]
    return jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])


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


@_pytree
@dataclass(eq=False)
class BaseModelOutput(ModelOutput):
    last_hidden_state: jax.Array | None = None
    hidden_states: Arrays | None = None
    attentions: Arrays | None = None


@_pytree
@dataclass(eq=False)
class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    last_hidden_state: jax.Array | None = None
    past_key_values: KVCache | None = None
    hidden_states: Arrays | None = None
    attentions: Arrays | None = None
    cross_attentions: Arrays | None = None


@_pytree
@dataclass(eq=False)
class CausalLMOutputWithCrossAttentions(ModelOutput):
    """What ``FlaxWhisperForConditionalGeneration.decode`` returns (transformers' Flax type)."""

    logits: jax.Array | None = None
    past_key_values: KVCache | None = None
    hidden_states: Arrays | None = None
    attentions: Arrays | None = None
    cross_attentions: Arrays | None = None


@_pytree
@dataclass(eq=False)
class Seq2SeqModelOutput(ModelOutput):
    last_hidden_state: jax.Array | None = None
    past_key_values: KVCache | None = None
    decoder_hidden_states: Arrays | None = None
    decoder_attentions: Arrays | None = None
    cross_attentions: Arrays | None = None
    encoder_last_hidden_state: jax.Array | None = None
    encoder_hidden_states: Arrays | None = None
    encoder_attentions: Arrays | None = None


@_pytree
@dataclass(eq=False)
class Seq2SeqLMOutput(ModelOutput):
    loss: jax.Array | None = None
    logits: jax.Array | None = None
    past_key_values: KVCache | None = None
    decoder_hidden_states: Arrays | None = None
    decoder_attentions: Arrays | None = None
    cross_attentions: Arrays | None = None
    encoder_last_hidden_state: jax.Array | None = None
    encoder_hidden_states: Arrays | None = None
    encoder_attentions: Arrays | None = None


@_pytree
@dataclass(eq=False)
class SequenceClassifierOutput(ModelOutput):
    loss: jax.Array | None = None
    logits: jax.Array | None = None
    hidden_states: Arrays | None = None
    attentions: Arrays | None = None
