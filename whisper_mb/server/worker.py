"""The loaded model, shared by every request and stream through one thread.

Frameworks differ in what they allow from several threads at once, and two cores gain nothing from
running two decodings side by side; so every model call of every stream and upload is queued onto one
worker thread, in arrival order, and awaited from the event loop, which stays free for the network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from whisper_core.transcribe import Transcriber

from .metrics import Metrics

T = TypeVar("T")


class ModelWorker:
    """One :class:`Transcriber` and the thread that runs it."""

    def __init__(self, transcriber: Transcriber, metrics: Metrics) -> None:
        self.transcriber = transcriber
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper-mb-model")

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on the model thread, after every call queued before it."""
        self.metrics.queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, function, args, kwargs)
        finally:
            self.metrics.queued -= 1

    def _timed(self, function: Callable[..., T], args: tuple, kwargs: dict) -> T:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self.metrics.processing_seconds += time.perf_counter() - started

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
