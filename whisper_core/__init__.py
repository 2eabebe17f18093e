"""Framework-neutral Whisper pieces: config, features, tokenizer, processor, audio, languages.

Importing this package never imports torch, TensorFlow or JAX.
"""

from .audio import SAMPLE_RATE, load_audio
from .config import WhisperConfig
from .feature_extraction import WhisperFeatureExtractor
from .generation_config import GenerationConfig
from .languages import LANGUAGES, TASKS, TO_LANGUAGE_CODE, language_code
from .processor import WhisperProcessor
from .tokenizer import WhisperTokenizer, WhisperTokenizerFast

__all__ = [
    "LANGUAGES",
    "SAMPLE_RATE",
    "TASKS",
    "TO_LANGUAGE_CODE",
    "GenerationConfig",
    "WhisperConfig",
    "WhisperFeatureExtractor",
    "WhisperProcessor",
    "WhisperTokenizer",
    "WhisperTokenizerFast",
    "language_code",
    "load_audio",
]
