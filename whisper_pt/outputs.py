"""PyTorch's model outputs: whisper_core's classes (:mod:`whisper_core.outputs`) holding torch tensors.

``out.logits``, ``out["logits"]`` and ``out[0]`` read as in transformers. The cache differs from the
other backends': transformers' plain per-layer tuples that grow by one step each call, not
:class:`whisper_core.outputs.KVCache`'s fixed slots (PyTorch decodes eagerly, with nothing to compile).
"""

from __future__ import annotations

import torch

from whisper_core.outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    ModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
)

Tensors = tuple[torch.Tensor, ...]
# Per decoder layer: (self_k, self_v, cross_k, cross_v), each [batch, heads, seq, head_dim].
KVCache = tuple[tuple[torch.Tensor, ...], ...]

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
