"""Decode any audio or video container PyAV (FFmpeg) reads into 16 kHz mono float32 samples."""

from __future__ import annotations

import io
import os
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16000


def load_audio(source: str | os.PathLike | bytes | io.IOBase, sampling_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Return the first audio stream of ``source`` as mono float32 in [-1, 1] at ``sampling_rate`` Hz.

    ``source`` is a path, the file's bytes, or a binary file object. FFmpeg's resampler
    converts the rate; channels are then averaged here, because FFmpeg's own float downmix
    weighs each stereo channel by 1/sqrt(2) (louder than the plain mean openai-whisper's
    ``ffmpeg -ac 1`` to int16 gives). Raises ``FileNotFoundError`` for a missing path and ``ValueError`` for
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
            resampler = av.AudioResampler(format="fltp", rate=sampling_rate)
            chunks = []
            for frame in container.decode(stream):
                chunks.extend(resampled.to_ndarray().mean(axis=0) for resampled in resampler.resample(frame))
            chunks.extend(resampled.to_ndarray().mean(axis=0) for resampled in resampler.resample(None))
    except av.error.FFmpegError as error:
        raise ValueError(f"cannot decode audio from {name}: {error}") from error
    if not chunks:
        raise ValueError(f"{name} holds no audio samples")
    audio = np.concatenate(chunks).astype(np.float32, copy=False)
    if audio.size == 0:
        raise ValueError(f"{name} holds no audio samples")
    return audio
