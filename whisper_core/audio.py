"""Decode any audio or video container PyAV (FFmpeg) reads into 16 kHz mono float32 samples."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16000
PCM16_BYTES = 2  # one s16le sample


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Raw s16le samples (an even number of bytes) as float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def mono_resampler(sampling_rate: int = SAMPLE_RATE) -> Callable[[av.AudioFrame | None], list[np.ndarray]]:
    """Decoded frames (None flushes) -> float32 mono pieces at ``sampling_rate``. FFmpeg's resampler converts
    the rate; channels are then averaged here, because FFmpeg's own float downmix weighs each stereo channel
    by 1/sqrt(2) (louder than the plain mean openai-whisper's ``ffmpeg -ac 1`` to int16 gives)."""
    resampler = av.AudioResampler(format="fltp", rate=sampling_rate)

    def resample(frame: av.AudioFrame | None) -> list[np.ndarray]:
        return [piece.to_ndarray().mean(axis=0).astype(np.float32) for piece in resampler.resample(frame)]

    return resample


def load_audio(source: str | os.PathLike | bytes | io.IOBase, sampling_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Return the first audio stream of ``source`` as mono float32 in [-1, 1] at ``sampling_rate`` Hz.

    ``source`` is a path, the file's bytes, or a binary file object (channels averaged: see
    :func:`mono_resampler`). Raises ``FileNotFoundError`` for a missing path and ``ValueError`` for
    anything that holds no decodable audio.
    """
    if sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
    if isinstance(source, bytes | bytearray):
        name, handle = "<bytes>", io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        name, handle = str(source), Path(source)
        if not handle.is_file():
            raise FileNotFoundError(f"no such audio file: {name}")
        handle = str(handle)
    else:
        name, handle = getattr(source, "name", "<stream>"), source
    try:
        with av.open(handle, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise ValueError(f"{name} has no audio stream")
            stream = container.streams.audio[0]
            resample = mono_resampler(sampling_rate)
            chunks = []
            for frame in container.decode(stream):
                chunks.extend(resample(frame))
            chunks.extend(resample(None))
    except av.error.FFmpegError as error:
        raise ValueError(f"cannot decode audio from {name}: {error}") from error
    if not chunks:
        raise ValueError(f"{name} holds no audio samples")
    audio = np.concatenate(chunks).astype(np.float32, copy=False)
    if audio.size == 0:
        raise ValueError(f"{name} holds no audio samples")
    return audio


def resample(samples: np.ndarray, rate: int, sampling_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Samples already decoded (``[n]``, or ``[channels, n]``) at ``rate`` Hz -> mono float32 at
    ``sampling_rate`` Hz through the FFmpeg resampler :func:`load_audio` uses (not a linear interpolation),
    so audio handed over as an array is resampled as a file's would be."""
    if rate <= 0 or sampling_rate <= 0:
        raise ValueError(f"sampling rates must be positive, got {rate} and {sampling_rate}")
    samples = np.asarray(samples, np.float32)
    samples = samples.mean(axis=0) if samples.ndim == 2 else samples
    if samples.ndim != 1:
        raise ValueError(f"expected samples shaped [n] or [channels, n], got {samples.shape}")
    if rate == sampling_rate or not samples.size:
        return samples
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, :]), format="flt", layout="mono")
    frame.sample_rate = rate
    convert = mono_resampler(sampling_rate)
    pieces = convert(frame) + convert(None)
    return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
