"""Long-form transcription written once over every backend: seek loop, fallback, word timing, writers.

``transcribe(["talk.mp3"], backend="flax", model="tiny.en")`` loads the model and returns one
:class:`Transcription` per file. Nothing here imports a deep-learning framework until a backend is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .backends import BACKENDS, Generated, ModelBackend, load_backend
from .chunked import transcribe_chunked
from .fallback import FallbackOptions, WindowDecoder, WindowResult, compression_ratio, needs_fallback
from .longform import TranscribeOptions, Transcriber, Transcription, TranscriptSegment, split_window
from .word_timing import WordTiming
from .writers import WRITERS, write_result

__all__ = [
    "BACKENDS",
    "WRITERS",
    "FallbackOptions",
    "Generated",
    "ModelBackend",
    "TranscribeOptions",
    "Transcriber",
    "TranscriptSegment",
    "Transcription",
    "WindowDecoder",
    "WindowResult",
    "WordTiming",
    "compression_ratio",
    "load_backend",
    "needs_fallback",
    "split_window",
    "transcribe",
    "transcribe_chunked",
    "write_result",
]


def transcribe(
    audios: Sequence[np.ndarray],
    directory: str,
    backend: str = "pt",
    options: TranscribeOptions = TranscribeOptions(),  # noqa: B008  # frozen: shared safely
) -> list[Transcription]:
    """Load the checkpoint ``directory`` with ``backend`` and transcribe 16 kHz mono clips of any length."""
    return Transcriber.from_pretrained(load_backend(backend, directory), directory).transcribe(audios, options)
