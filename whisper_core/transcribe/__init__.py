"""Long-form transcription written once over every backend: seek loop, batched pieces, fallback, word timing,
voice activity, writers.

``Transcriber.from_pretrained(backend, directory).transcribe(audios)`` returns one :class:`Transcription`
per 16 kHz clip, for any :class:`ModelBackend` (``whisper_mb.load_backend("flax", directory)`` gives one,
and ``whisper_mb.transcribe`` does both steps). Nothing here imports a deep-learning framework.
"""

from __future__ import annotations

from .backends import Generated, ModelBackend
from .batched import speech_chunks, transcribe_batched
from .fallback import FallbackOptions, WindowDecoder, WindowResult, compression_ratio, needs_fallback
from .guards import echoes_an_end, fit_to_audio, has_repetition_loop, loop_start
from .longform import Transcriber
from .options import TranscribeOptions
from .results import Transcription, TranscriptSegment
from .speech_chunks import SpeechChunk, group_speech, map_to_file, overlapping_windows, pack_leftovers
from .windows import split_window
from .word_timing import WordTiming
from .writers import WRITERS, write_result

__all__ = [
    "WRITERS",
    "FallbackOptions",
    "Generated",
    "ModelBackend",
    "SpeechChunk",
    "TranscribeOptions",
    "Transcriber",
    "TranscriptSegment",
    "Transcription",
    "WindowDecoder",
    "WindowResult",
    "WordTiming",
    "compression_ratio",
    "echoes_an_end",
    "fit_to_audio",
    "group_speech",
    "has_repetition_loop",
    "loop_start",
    "map_to_file",
    "needs_fallback",
    "overlapping_windows",
    "pack_leftovers",
    "speech_chunks",
    "split_window",
    "transcribe_batched",
    "write_result",
]
