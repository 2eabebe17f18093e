"""Everything one server process shares: its settings, the model worker, the counters and the open slots."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

from whisper_core.languages import language_code
from whisper_core.streaming import StreamingOptions
from whisper_core.transcribe import Transcriber

from .metrics import Metrics
from .sessions import StreamSession
from .settings import ServerSettings
from .worker import ModelWorker

OPENAI_MODEL_NAME = "whisper-1"  # what existing OpenAI client code asks for


class ServerState:
    """The shared model and the limits on streams and uploads."""

    def __init__(self, settings: ServerSettings, transcriber: Transcriber) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.worker = ModelWorker(transcriber, self.metrics)
        self.vad_available = settings.vad and importlib.util.find_spec("onnxruntime") is not None
        self.streaming = StreamingOptions(policy=settings.policy, vac=self.vad_available)

    @property
    def transcriber(self) -> Transcriber:
        return self.worker.transcriber

    @property
    def model_names(self) -> set[str]:
        """Names a request may give as ``model``: as served, its directory's name, and ``whisper-1``."""
        return {self.settings.model, Path(self.settings.model).name, OPENAI_MODEL_NAME}

    def open_stream(self) -> bool:
        """Take a stream slot; False when ``max_streams`` are open."""
        return self._take("open_streams", self.settings.max_streams)

    def close_stream(self) -> None:
        self.metrics.open_streams -= 1

    def open_upload(self) -> bool:
        """Take an upload slot; False when ``max_uploads`` are waiting or running."""
        return self._take("open_uploads", self.settings.max_uploads)

    def close_upload(self) -> None:
        self.metrics.open_uploads -= 1

    def _take(self, gauge: str, limit: int) -> bool:
        """Count one more in the metrics' ``gauge`` unless it is at ``limit`` already (the event loop is the
        only caller, so no lock)."""
        if getattr(self.metrics, gauge) >= limit:
            return False
        setattr(self.metrics, gauge, getattr(self.metrics, gauge) + 1)
        return True

    def new_session(self, language: str | None) -> StreamSession:
        """A stream in ``language`` (None: detected; ValueError for an unknown one)."""
        options = self.streaming if language is None else replace(self.streaming, language=language_code(language))
        return StreamSession(self.worker, options, self.settings.min_chunk_size)
