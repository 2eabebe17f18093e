"""TensorFlow backend: Whisper models as Keras 3 models with transformers 4.57's TF names and numerics."""

from .importing import import_tensorflow

import_tensorflow()  # before anything below imports TensorFlow

from .modeling import (  # noqa: E402
    TFWhisperDecoder,
    TFWhisperEncoder,
    TFWhisperForAudioClassification,
    TFWhisperForConditionalGeneration,
    TFWhisperModel,
    TFWhisperPreTrainedModel,
)
from .outputs import KVCache  # noqa: E402

__all__ = [
    "KVCache",
    "TFWhisperDecoder",
    "TFWhisperEncoder",
    "TFWhisperForAudioClassification",
    "TFWhisperForConditionalGeneration",
    "TFWhisperModel",
    "TFWhisperPreTrainedModel",
]
