"""Live audio as clients send it, turned into 16 kHz mono float32 samples as it arrives.

Two kinds of streams come in: raw s16le 16 kHz mono PCM (whisper_streaming's clients, ``arecord``,
WhisperLiveKit's AudioWorklet mode) and a container cut into frames: WebM/Opus as a browser's
``MediaRecorder`` makes it, or a file's bytes (WAV, FLAC, Ogg, MP3 with an ID3 tag) as WhisperLiveKit's
own test client sends them. Which one is told by the first bytes. A container is decoded by PyAV on its
own thread, which reads from a pipe the frames are written into; each decoded piece is handed back to
the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import av
import numpy as np

from whisper_core.audio import PCM16_BYTES, mono_resampler, pcm16_to_float

# The first bytes of the containers a stream may come in, and the demuxer to name (None: let FFmpeg probe).
CONTAINERS = {
    b"\x1a\x45\xdf\xa3": "matroska",  # WebM (MediaRecorder)
    b"RIFF": None,  # WAV
    b"fLaC": None,
    b"OggS": None,
    b"ID3": None,  # MP3 with its tag
}

Samples = Callable[[np.ndarray], None]


class PcmDecoder:
    """Raw s16le 16 kHz mono: frames may split a sample, so an odd byte waits for the next frame."""

    def __init__(self, on_samples: Samples) -> None:
        self.on_samples = on_samples
        self._carry = b""

    def feed(self, data: bytes) -> None:
        data = self._carry + data
        usable = len(data) - len(data) % PCM16_BYTES
        self._carry = data[usable:]
        if usable:
            self.on_samples(pcm16_to_float(data[:usable]))

    async def finish(self) -> None:
        self._carry = b""


class _Pipe:
    """A blocking file-like object PyAV reads from while the event loop writes into it."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._closed = False
        self._ready = threading.Condition()

    def write(self, data: bytes) -> None:
        with self._ready:
            self._chunks.append(data)
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()

    def read(self, size: int = -1) -> bytes:
        with self._ready:
            while not self._chunks and not self._closed:
                self._ready.wait()
            if not self._chunks:
                return b""  # end of stream
            data = b"".join(self._chunks)
            size = len(data) if size < 0 else size
            self._chunks = [data[size:]] if len(data) > size else []
            return data[:size]


class ContainerDecoder:
    """A container stream (a browser's WebM/Opus, a file's bytes), decoded with PyAV on a thread as its pieces
    arrive; ``container_format`` names the demuxer (None: FFmpeg probes the first bytes)."""

    def __init__(self, on_samples: Samples, loop: asyncio.AbstractEventLoop, container_format: str | None) -> None:
        self.on_samples = on_samples
        self.container_format = container_format
        self.error: str | None = None
        self._loop = loop
        self._pipe = _Pipe()
        self._done = loop.create_future()
        self._thread = threading.Thread(target=self._decode, name="whisper-mb-webm", daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        self._pipe.write(data)

    async def finish(self) -> None:
        """The stream ended: decode what is left, wait until every sample was handed over."""
        self._pipe.close()
        await self._done

    def _decode(self) -> None:
        try:
            # WebM: no probing beyond the header, a live stream has only a fraction of a second to show.
            options = {"probesize": "4096"} if self.container_format == "matroska" else {}
            with av.open(self._pipe, mode="r", format=self.container_format, options=options) as container:
                if not container.streams.audio:
                    raise ValueError("the stream has no audio track")
                resample = mono_resampler()
                for frame in container.decode(container.streams.audio[0]):
                    self._hand_over(resample(frame))
                self._hand_over(resample(None))
        except (av.error.FFmpegError, ValueError) as error:
            self.error = f"cannot decode the audio stream: {error}"
        finally:
            self._loop.call_soon_threadsafe(self._done.set_result, None)

    def _hand_over(self, pieces: list[np.ndarray]) -> None:
        for samples in pieces:
            self._loop.call_soon_threadsafe(self.on_samples, samples)


def decoder_for(
    first_frame: bytes, on_samples: Samples, loop: asyncio.AbstractEventLoop
) -> PcmDecoder | ContainerDecoder:
    """A container's decoder when the stream starts as one of :data:`CONTAINERS` does, else raw PCM."""
    for magic, container_format in CONTAINERS.items():
        if first_frame.startswith(magic):
            return ContainerDecoder(on_samples, loop, container_format)
    return PcmDecoder(on_samples)
