"""The application layer: the backend registry, live conversion, verification, parity and the CLI.

It sits above every backend (``whisper_core`` <- ``weights_bridge`` <- ``whisper_pt`` / ``whisper_tf`` /
``whisper_flax`` <- ``whisper_mb``), so it is the one place that picks a backend by name. Importing it
loads no framework: a backend's is imported when that backend is first used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from whisper_core.transcribe import TranscribeOptions, Transcriber, Transcription

from .compile_cache import keep_compilations
from .live import convert, to_flax, to_pt, to_tf
from .registry import BACKENDS, KINDS, BackendSpec, backend, backend_of, load_backend

__all__ = [
    "BACKENDS",
    "KINDS",
    "BackendSpec",
    "backend",
    "backend_of",
    "convert",
    "load_backend",
    "to_flax",
    "to_pt",
    "to_tf",
    "transcribe",
]


def transcribe(
    audios: Sequence[np.ndarray],
    directory: str,
    backend: str = "pt",
    options: TranscribeOptions = TranscribeOptions(),  # noqa: B008  # frozen: shared safely
    compute_type: str = "float32",
    batch_size: int = 1,
) -> list[Transcription]:
    """Load the checkpoint ``directory`` with ``backend`` in ``compute_type`` (float32, float16, bfloat16,
    int8, int8_float32) and transcribe 16 kHz mono clips of any length: sequentially, or with ``batch_size`` above 1
    in pieces cut in advance (at silences with ``options.vad_filter``) decoded that many at once. The backend's compilations are
    kept under ``$WHISPER_MB_HOME`` (:mod:`whisper_mb.compile_cache`), so the next process starts fast."""
    keep_compilations(backend)
    model = load_backend(backend, directory, compute_type)
    return Transcriber.from_pretrained(model, directory).transcribe(audios, options, batch_size=batch_size)
