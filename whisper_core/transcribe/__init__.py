"""Long-form transcription written once over every backend: seek loop, fallback, word timing, writers.

``Transcriber.from_pretrained(backend, directory).transcribe(audios)`` returns one :class:`Transcription`
per 16 kHz clip, for any :class:`ModelBackend` (``whisper_mb.load_backend("flax", directory)`` gives one,
and ``whisper_mb.transcribe`` does both steps). Nothing here imports a deep-learning framework.
"""

from __future__ import annotations

from .backends import Generated, ModelBackend
from .chunked import transcribe_chunked
from .fallback import FallbackOptions, WindowDecoder, WindowResult, compression_ratio, needs_fallback
from .longform import TranscribeOptions, Transcriber, Transcription, TranscriptSegment, split_window
from .word_timing import WordTiming
from .writers import WRITERS, write_result

__all__ = [
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
    "needs_fallback",
    "split_window",
    "transcribe_chunked",
    "write_result",
]
