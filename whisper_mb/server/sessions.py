"""One live stream on the server, whatever carries it (WebSocket or TCP).

Audio is appended as it arrives; a pass over the stream's buffer runs on the shared model thread once
``min_chunk_size`` seconds of new audio are waiting (or the stream ended), and audio that arrives while a
pass runs goes into the next one, as in whisper_streaming's server. Each pass yields what it committed;
the stream's state lives in its own :class:`OnlineProcessor`, so the model is shared by every stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from whisper_core.streaming import OnlineProcessor, StreamingOptions, StreamWord

from .worker import ModelWorker


class StreamSession:
    """Audio in (:meth:`feed`, :meth:`end`), committed words out (:meth:`passes`)."""

    def __init__(self, worker: ModelWorker, options: StreamingOptions, min_chunk_size: float) -> None:
        self.worker = worker
        self.processor = OnlineProcessor(worker.transcriber, options)
        self.rate = self.processor.sampling_rate
        self.min_samples = round(min_chunk_size * self.rate)
        self._waiting: list[np.ndarray] = []
        self._waiting_samples = 0
        self._ended = False
        self.cancelled = False
        self._wake = asyncio.Event()
        self.received_seconds = 0.0

    def feed(self, samples: np.ndarray) -> None:
        """Append audio (16 kHz mono float32); called on the event loop."""
        if self._ended or not len(samples):
            return
        self._waiting.append(samples)
        self._waiting_samples += len(samples)
        self.received_seconds += len(samples) / self.rate
        self.worker.metrics.audio_seconds["stream"] += len(samples) / self.rate
        if self._waiting_samples >= self.min_samples:
            self._wake.set()

    def end(self) -> None:
        """No more audio: the last pass commits everything left."""
        self._ended = True
        self._wake.set()

    def cancel(self) -> None:
        """The client left: no more passes, not even the last one."""
        self.cancelled = self._ended = True
        self._wake.set()

    async def passes(self) -> AsyncIterator[list[StreamWord]]:
        """Run passes as audio comes; yield each pass' committed words (also when empty, so a client can show
        the pending text), and last what :meth:`OnlineProcessor.finish` commits."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.cancelled:
                return
            if self._waiting:
                self.processor.insert_audio_chunk(np.concatenate(self._waiting))
                self._waiting, self._waiting_samples = [], 0
                if not self._ended:  # at the end, finish() decodes the buffer once for all
                    yield await self.worker.run(self.processor.process_iter)
            if self._ended and not self._waiting:
                yield await self.worker.run(self.processor.finish)
                return
            if self._ended or self._waiting_samples >= self.min_samples:
                self._wake.set()  # audio (or the end) came in during the pass

    @property
    def committed(self) -> list[StreamWord]:
        return self.processor.committed

    def pending(self) -> list[StreamWord]:
        return self.processor.pending()
