"""Model outputs that read like transformers' ``ModelOutput``: ``out.logits``, ``out["logits"]``, ``out[0]``.

Only the fields that are set (not ``None``) count as entries, in field order, so ``out[0]`` and
``out.to_tuple()`` give what transformers returns with ``return_dict=False``. The classes hold
whatever arrays the backend that built them computes (torch, TensorFlow or JAX): field lists and
access rules are written here once, and each backend's ``outputs.py`` re-exports them, adding only
what its framework needs (``whisper_flax`` registers them as JAX pytrees). Nothing here imports a
framework.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

# A torch.Tensor, tf.Tensor or jax.Array: whichever backend built the output.
Array = Any
Arrays = tuple[Array, ...]
# The backend's decoder cache: whisper_pt's per-layer tuples, or a KVCache (TensorFlow, Flax).
Cache = Any


class KVCache(NamedTuple):
    """The decoder's fixed-size cache of whisper_tf and whisper_flax, passed in and returned (never mutated).

    ``layers``: per decoder layer ``(self_k, self_v, cross_k, cross_v)``, each ``[batch * heads, seq,
    head_dim]``; self-attention entries hold ``max_length`` slots of which the first ``index`` are
    written; cross-attention entries hold the encoder frames, projected once. ``index``: int32 scalar,
    the next write position (and the position id of the next token). A NamedTuple of arrays, so it is
    a ``tf.nest`` structure that ``tf.while_loop`` carries and a JAX pytree that ``jax.jit`` takes.

    Batch and heads share one axis so that, at batch 1, the step's cache write and the attention
    products that read it see the same shape: with a separate batch axis of 1, XLA drops it for the
    products and then keeps two versions of every written cache, copying each one four times per token
    (48 copies of 0.9 MB per token for base on JAX, about 2 ms).
    """

    layers: tuple[Arrays, ...]
    index: Array


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
    last_hidden_state: Array | None = None
    hidden_states: Arrays | None = None
    attentions: Arrays | None = None


@dataclass(eq=False)
class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    last_hidden_state: Array | None = None
    past_key_values: Cache | None = None
    hidden_states: Arrays | None = None
    attentions: Arrays | None = None
    cross_attentions: Arrays | None = None


@dataclass(eq=False)
class CausalLMOutputWithCrossAttentions(ModelOutput):
    """What ``FlaxWhisperForConditionalGeneration.decode`` returns (transformers' Flax type)."""

    logits: Array | None = None
    past_key_values: Cache | None = None
    hidden_states: Arrays | None = None
    attentions: Arrays | None = None
    cross_attentions: Arrays | None = None


@dataclass(eq=False)
class Seq2SeqModelOutput(ModelOutput):
    last_hidden_state: Array | None = None
    past_key_values: Cache | None = None
    decoder_hidden_states: Arrays | None = None
    decoder_attentions: Arrays | None = None
    cross_attentions: Arrays | None = None
    encoder_last_hidden_state: Array | None = None
    encoder_hidden_states: Arrays | None = None
    encoder_attentions: Arrays | None = None


@dataclass(eq=False)
class Seq2SeqLMOutput(ModelOutput):
    loss: Array | None = None
    logits: Array | None = None
    past_key_values: Cache | None = None
    decoder_hidden_states: Arrays | None = None
    decoder_attentions: Arrays | None = None
    cross_attentions: Arrays | None = None
    encoder_last_hidden_state: Array | None = None
    encoder_hidden_states: Arrays | None = None
    encoder_attentions: Arrays | None = None


@dataclass(eq=False)
class SequenceClassifierOutput(ModelOutput):
    loss: Array | None = None
    logits: Array | None = None
    hidden_states: Arrays | None = None
    attentions: Arrays | None = None


# Every concrete output class, for a backend that registers them with its framework.
OUTPUT_CLASSES: tuple[type[ModelOutput], ...] = (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    Seq2SeqModelOutput,
    Seq2SeqLMOutput,
    SequenceClassifierOutput,
)


def _unchanged(array: Any) -> Any:
    return array


def as_encoder_output(encoder_outputs: Any, as_array: Callable[[Any], Array] = _unchanged) -> BaseModelOutput:
    """What callers pass as ``encoder_outputs``, as one :class:`BaseModelOutput`.

    A :class:`BaseModelOutput` is returned as is; any other output object with a ``last_hidden_state``
    (transformers' own ``BaseModelOutput``, say) gives its three fields by name; a tuple or list is
    ``(last_hidden_state, hidden_states, attentions)`` as ``return_dict=False`` gives it (shorter is
    fine); anything else is a bare ``[b, S, d]`` last hidden state (our extension: every backend takes
    it), turned into the backend's array by ``as_array``.
    """
    if isinstance(encoder_outputs, BaseModelOutput):
        return encoder_outputs
    if hasattr(encoder_outputs, "last_hidden_state"):
        return BaseModelOutput(
            encoder_outputs.last_hidden_state,
            getattr(encoder_outputs, "hidden_states", None),
            getattr(encoder_outputs, "attentions", None),
        )
    if isinstance(encoder_outputs, tuple | list):
        return BaseModelOutput(*encoder_outputs[:3])
    return BaseModelOutput(last_hidden_state=as_array(encoder_outputs))
