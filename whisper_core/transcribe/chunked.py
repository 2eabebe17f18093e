"""Chunked long-form transcription for throughput: overlapping 30 s windows decoded in parallel batches.

The sequential mode waits for each window before it knows where the next one starts. Here the
windows are fixed in advance (every ``chunk_length - 2 * stride_length`` seconds), so a whole batch
of them is decoded at once, without the previous text as prompt. Each window owns the middle of its
span (all but ``stride_length`` seconds at each inner edge); a segment is kept by the window that
owns its midpoint, so the overlaps give each segment one window that saw it whole.
"""

from __future__ import annotations

import numpy as np

from .fallback import WindowDecoder, is_silent
from .longform import (
    TranscribeOptions,
    Transcriber,
    Transcription,
    TranscriptSegment,
    WindowSplit,
    split_window,
)


def window_starts(duration: float, chunk_length: float, stride_length: float) -> list[float]:
    """Start times (s) of the windows covering ``duration`` seconds."""
    step = chunk_length - 2 * stride_length
    if step <= 0:
        raise ValueError(f"stride_length ({stride_length}) must be less than half of chunk_length ({chunk_length})")
    starts = [0.0]
    while starts[-1] + chunk_length < duration:
        starts.append(starts[-1] + step)
    return starts


def owned_span(index: int, starts: list[float], chunk_length: float, stride_length: float) -> tuple[float, float]:
    """The part of window ``index`` whose segments it keeps (the outer edges of the first and last are open)."""
    start = starts[index] + stride_length if index > 0 else -np.inf
    end = starts[index] + chunk_length - stride_length if index < len(starts) - 1 else np.inf
    return start, end


def _unfinished_piece(
    split: WindowSplit, transcriber: Transcriber, offset: float, size: int
) -> list[tuple[float, float, list[int]]]:
    """The segment the last window left open (its speech runs to the end of the audio), as a piece from
    its opening timestamp to the end of the window's audio; none when the window closed every segment."""
    tokens = split.unfinished
    if not any(token < transcriber.eot for token in tokens):
        return []
    opening = tokens[0] - transcriber.timestamp_begin if tokens[0] >= transcriber.timestamp_begin else 0
    start = offset + opening * transcriber.time_precision
    return [(start, offset + size / transcriber.frames_per_second, list(tokens))]


def transcribe_chunked(
    transcriber: Transcriber,
    audio: np.ndarray,
    options: TranscribeOptions = TranscribeOptions(),  # noqa: B008  # frozen: shared safely
    *,
    chunk_length: float = 30.0,
    stride_length: float = 5.0,
    batch_size: int = 8,
) -> Transcription:
    """Transcribe one clip of any length in batches of ``batch_size`` overlapping windows.

    Windows are decoded independently, so the options that tie a window to the text or the time before
    it (``initial_prompt``, ``clip_timestamps``, ``hallucination_silence_threshold``) are refused rather
    than ignored; previous-text conditioning does not apply either.
    """
    sequential_only = {
        "initial_prompt": options.initial_prompt,
        "clip_timestamps": options.clip_timestamps,
        "hallucination_silence_threshold": options.hallucination_silence_threshold,
    }
    given = [name for name, value in sequential_only.items() if value]
    if given:
        raise ValueError(f"chunked transcription decodes windows independently: it does not take {given}")
    if chunk_length * transcriber.frames_per_second > transcriber.window_frames:
        raise ValueError(f"chunk_length must be at most {transcriber.window_frames / transcriber.frames_per_second} s")
    mel = transcriber.log_mel(audio)
    frames_per_second = transcriber.frames_per_second
    content_frames = mel.shape[-1] - transcriber.window_frames
    starts = window_starts(content_frames / frames_per_second, chunk_length, stride_length)
    language = transcriber.languages([mel], options.language)[0]
    multilingual = transcriber.ids.is_multilingual
    decoder = WindowDecoder(
        transcriber.backend, transcriber.tokenizer, options.fallback(), task=options.task, seed=options.seed
    )
    chunk_frames = round(chunk_length * frames_per_second)
    segments: list[TranscriptSegment] = []
    for first in range(0, len(starts), batch_size):
        indices = range(first, min(first + batch_size, len(starts)))
        windows, sizes = [], []
        for index in indices:
            seek = round(starts[index] * frames_per_second)
            size = min(chunk_frames, content_frames - seek)
            window = np.zeros((mel.shape[0], transcriber.window_frames), np.float32)
            window[:, :size] = mel[:, seek : seek + size]
            windows.append(window)
            sizes.append(size)
        results = decoder.decode(
            np.stack(windows), [None] * len(windows), [language if multilingual else None] * len(windows)
        )
        for index, window, size, result in zip(indices, windows, sizes, results, strict=True):
            if is_silent(result, decoder.options):
                continue
            begin, end = owned_span(index, starts, chunk_length, stride_length)
            split = split_window(
                result.tokens,
                transcriber.timestamp_begin,
                starts[index],
                size,
                transcriber.input_stride,
                transcriber.time_precision,
            )
            pieces = list(split.segments)
            if index == len(starts) - 1:  # no later window will decode what this one cut off
                pieces += _unfinished_piece(split, transcriber, starts[index], size)
            seek = round(starts[index] * frames_per_second)
            kept: list[TranscriptSegment] = []
            for start, stop, tokens in pieces:
                if begin <= (start + stop) / 2 < end:
                    segment = transcriber.segment(start, stop, tokens, result, seek, len(segments) + len(kept))
                    if segment.text_tokens:
                        kept.append(segment)
            if kept and (options.word_timestamps or options.return_token_timestamps):
                last_speech = segments[-1].end if segments else 0.0
                transcriber.align(kept, window, size, language, options, last_speech, starts[index])
            segments.extend(kept)
    text = "".join(segment.text for segment in segments)
    return Transcription(text, segments, language)
