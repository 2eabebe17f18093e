"""Flax backend: Whisper models with transformers 4.57's Flax names, parameter paths and numerics."""

from whisper_core.decoding import WhisperGenerateOutput

from .generation import JaxOps
from .modeling import (
    FlaxWhisperDecoder,
    FlaxWhisperEncoder,
    FlaxWhisperForAudioClassification,
    FlaxWhisperForConditionalGeneration,
    FlaxWhisperModel,
    FlaxWhisperPreTrainedModel,
)
from .outputs import KVCache

__all__ = [
    "FlaxWhisperDecoder",
    "FlaxWhisperEncoder",
    "FlaxWhisperForAudioClassification",
    "FlaxWhisperForConditionalGeneration",
    "FlaxWhisperModel",
    "FlaxWhisperPreTrainedModel",
    "JaxOps",
    "KVCache",
    "WhisperGenerateOutput",
]
