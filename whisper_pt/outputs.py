"""Model outputs that read like transformers' ``ModelOutput``: ``out.logits``, ``out["logits"]``, ``out[0]``.

Only the fields that are set (not ``None``) count as entries, in field order, so ``out[0]`` and
``out.to_tuple()`` give what transformers returns with ``return_dict=False``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import torch

Tensors = tuple[torch.Tensor, ...]
# Per decoder layer: (self_k, self_v, cross_k, cross_v), each [batch, heads, seq, head_dim].
KVCache = tuple[tuple[torch.Tensor, ...], ...]


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
    last_hidden_state: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass(eq=False)
class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    past_key_values: KVCache | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


@dataclass(eq=False)
class Seq2SeqModelOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    past_key_values: KVCache | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


@dataclass(eq=False)
class Seq2SeqLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: KVCache | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


@dataclass(eq=False)
class SequenceClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
