"""PyTorch backend: Whisper models with transformers 4.57's names, signatures and numerics."""

from .modeling import (
    WhisperDecoder,
    WhisperEncoder,
    WhisperForAudioClassification,
    WhisperForConditionalGeneration,
    WhisperModel,
    WhisperPreTrainedModel,
)

__all__ = [
    "WhisperDecoder",
    "WhisperEncoder",
    "WhisperForAudioClassification",
    "WhisperForConditionalGeneration",
    "WhisperModel",
    "WhisperPreTrainedModel",
]
