"""TensorFlow backend: Whisper models as Keras 3 models with transformers 4.57's TF names and numerics."""

from .modeling import (
    TFWhisperDecoder,
    TFWhisperEncoder,
    TFWhisperForAudioClassification,
    TFWhisperForConditionalGeneration,
    TFWhisperModel,
    TFWhisperPreTrainedModel,
)
from .outputs import KVCache

__all__ = [
    "KVCache",
    "TFWhisperDecoder",
    "TFWhisperEncoder",
    "TFWhisperForAudioClassification",
    "TFWhisperForConditionalGeneration",
    "TFWhisperModel",
    "TFWhisperPreTrainedModel",
]
