"""The loaded model, shared by every request and stream through one thread.

Frameworks differ in what they allow from several threads at once, and two cores gain nothing from
running two decodings side by side; so every model call of every stream and upload is queued onto one
worker thread and awaited from the event loop, which stays free for the network. Live streams go first:
a listener waits on every pass, while an upload's client waits only for the whole file, so an upload
runs when no stream pass is waiting (each in arrival order within its kind).
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from whisper_core.transcribe import Transcriber

from .metrics import Metrics

T = TypeVar("T")
LIVE, BATCH = 0, 1  # priorities: stream passes, then uploads


class ModelWorker:
    """One :class:`Transcriber` and the thread that runs it."""

    def __init__(self, transcriber: Transcriber, metrics: Metrics) -> None:
        self.transcriber = transcriber
        self.metrics = metrics
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()  # arrival order within a priority
        self._thread = threading.Thread(target=self._serve, name="whisper-mb-model", daemon=True)
        self._thread.start()

    async def run(self, function: Callable[..., T], *args: Any, priority: int = LIVE, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on the model thread, after the calls queued before it at its
        ``priority`` or a more urgent one."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.metrics.queued += 1
        self._jobs.put((priority, next(self._order), loop, future, function, args, kwargs))
        try:
            return await future
        finally:
            self.metrics.queued -= 1

    def _serve(self) -> None:
        while True:
            _, _, loop, future, function, args, kwargs = self._jobs.get()
            if function is None:
                return
            started = time.perf_counter()
            try:
                result, error = function(*args, **kwargs), None
            except Exception as raised:  # handed to the caller, never fatal to the thread
                result, error = None, raised
            self.metrics.processing_seconds += time.perf_counter() - started
            loop.call_soon_threadsafe(_settle, future, result, error)

    def close(self) -> None:
        """Finish the calls already queued, then stop the thread."""
        self._jobs.put((BATCH + 1, next(self._order), None, None, None, (), {}))
        self._thread.join()


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # its caller went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
