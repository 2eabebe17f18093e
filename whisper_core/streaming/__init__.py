"""Real-time streaming transcription written once over every backend (whisper_streaming's LocalAgreement-2,
SimulStreaming's AlignAtt, voice activity control). Nothing here imports a deep-learning framework.

``OnlineProcessor(Transcriber.from_pretrained(backend, directory), StreamingOptions(...))`` is one stream;
:func:`simulate` plays a file through it in simulated real time, :func:`live` feeds it as audio comes.
"""

from __future__ import annotations

from .agreement import LocalAgreement, StreamWord, drop_committed
from .online import POLICIES, OnlineProcessor, StreamingOptions, late_token
from .simulation import Commit, StreamStats, live, simulate

__all__ = [
    "POLICIES",
    "Commit",
    "LocalAgreement",
    "OnlineProcessor",
    "StreamStats",
    "StreamWord",
    "StreamingOptions",
    "drop_committed",
    "late_token",
    "live",
    "simulate",
]
