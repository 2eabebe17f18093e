"""Pieces of a file that are decoded on their own, and how their times map back to the file.

A :class:`SpeechChunk` is one or more spans of the file played back to back: the speech that voice
activity detection found (silences between spans cut out), or one plain window of the file. The model
hears the spans as one clip, so what it times is clip time; :meth:`SpeechChunk.file_time` turns clip
time back into file time, so segments and words are timed where they are spoken in the file.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SpeechChunk:
    """Spans ``[(start, end), ...]`` of a file in samples, increasing and disjoint, heard back to back.

    ``owned`` is the part of the file (seconds) whose segments this chunk keeps: everything for speech
    chunks, the middle for overlapping windows. ``closed`` says no later chunk hears what follows its end,
    so a segment the model left open at the end is kept rather than left to the next chunk.
    """

    spans: tuple[tuple[int, int], ...]
    sampling_rate: int
    owned: tuple[float, float] = (-math.inf, math.inf)
    closed: bool = True

    def __post_init__(self) -> None:
        if not self.spans:
            raise ValueError("a speech chunk needs at least one span")
        for (start, end), following in zip(self.spans, (*self.spans[1:], None), strict=True):
            if not 0 <= start < end or (following is not None and following[0] < end):
                raise ValueError(f"spans must be non-empty, increasing and disjoint, got {self.spans}")

    @property
    def samples(self) -> int:
        """Length of the clip the model hears."""
        return sum(end - start for start, end in self.spans)

    @property
    def start(self) -> float:
        """Where the chunk starts in the file (seconds)."""
        return self.spans[0][0] / self.sampling_rate

    @property
    def end(self) -> float:
        """Where the chunk's audio ends in the file (seconds)."""
        return self.spans[-1][1] / self.sampling_rate

    def audio(self, audio: np.ndarray) -> np.ndarray:
        """The clip the model hears: the spans of ``audio`` back to back."""
        return np.concatenate([audio[start:end] for start, end in self.spans]).astype(np.float32, copy=False)

    def file_time(self, seconds: float, is_end: bool = False) -> float:
        """Clip time -> file time. A time on the seam of two spans belongs to the span it ends when
        ``is_end`` (a segment's or word's end), else to the span it starts; times past the clip stay in the
        last span, and are clamped to its end."""
        clip_ends = np.cumsum([end - start for start, end in self.spans]) / self.sampling_rate
        position = max(seconds, 0.0)
        index = (bisect.bisect_left if is_end else bisect.bisect_right)(clip_ends.tolist(), position)
        index = min(index, len(self.spans) - 1)
        clip_start = clip_ends[index - 1] if index else 0.0
        span_start, span_end = (sample / self.sampling_rate for sample in self.spans[index])
        return round(float(min(span_start + position - clip_start, span_end)), 3)

    def file_span(self, start: float, end: float) -> tuple[float, float]:
        """A word's clip times -> file times, both in the one span that holds the word's middle: a word is
        never split by a silence that voice activity detection cut out, so an edge that alignment put across
        a seam is brought back to it."""
        middle = self.file_time((start + end) / 2)
        index = next(
            i for i, (a, b) in enumerate(self.spans) if a / self.sampling_rate <= middle <= b / self.sampling_rate
        )
        low, high = (sample / self.sampling_rate for sample in self.spans[index])
        mapped_start = self.file_time(start)
        mapped_end = self.file_time(end, is_end=True)
        first = min(max(mapped_start, low), high)
        return round(first, 3), round(max(first, min(max(mapped_end, low), high)), 3)

    def after(self, seconds: float) -> SpeechChunk | None:
        """What the chunk holds after clip time ``seconds``, as a chunk of its own (None when nothing is left):
        the speech a decoding that stopped early never reached."""
        cut = round(self.file_time(seconds) * self.sampling_rate)
        spans = tuple((max(start, cut), end) for start, end in self.spans if end > cut)
        return SpeechChunk(spans, self.sampling_rate, self.owned, self.closed) if spans else None

    def owns(self, start: float, end: float) -> bool:
        """Whether a segment timed ``start``-``end`` in the file is this chunk's to keep."""
        low, high = self.owned
        return low <= (start + end) / 2 < high


def group_speech(spans: Sequence[tuple[int, int]], max_samples: int, sampling_rate: int) -> list[SpeechChunk]:
    """Speech spans of one file, in order, gathered into chunks of at most ``max_samples`` each (the
    silences between spans do not count). A span longer than that is cut into pieces that fit."""
    pieces: list[tuple[int, int]] = []
    for start, end in spans:
        pieces.extend((cut, min(cut + max_samples, end)) for cut in range(start, end, max_samples))
    chunks: list[SpeechChunk] = []
    current: list[tuple[int, int]] = []
    for piece in pieces:
        if current and sum(end - start for start, end in current) + piece[1] - piece[0] > max_samples:
            chunks.append(SpeechChunk(tuple(current), sampling_rate))
            current = []
        current.append(piece)
    if current:
        chunks.append(SpeechChunk(tuple(current), sampling_rate))
    return chunks


def pack_leftovers(chunks: Sequence[SpeechChunk], max_samples: int) -> list[SpeechChunk]:
    """What the closed chunks of one file left undecoded, heard in as few chunks of at most ``max_samples`` as
    fit: each leftover is a few seconds, and a window costs the encoder a full 30 s whatever it holds."""
    if not chunks:
        return []
    spans = sorted(span for chunk in chunks for span in chunk.spans)
    owned = (min(chunk.owned[0] for chunk in chunks), max(chunk.owned[1] for chunk in chunks))
    return [
        SpeechChunk(packed.spans, packed.sampling_rate, owned)
        for packed in group_speech(spans, max_samples, chunks[0].sampling_rate)
    ]


def overlapping_windows(
    samples: int, sampling_rate: int, chunk_length: float = 30.0, stride_length: float = 5.0
) -> list[SpeechChunk]:
    """The whole file as windows of ``chunk_length`` seconds overlapping by twice ``stride_length``, for
    decoding without voice activity detection: each window keeps the segments whose midpoint lies in the
    middle of its span (all but ``stride_length`` at each inner edge), so every segment has one window
    that heard it whole."""
    step = chunk_length - 2 * stride_length
    if step <= 0:
        raise ValueError(f"stride_length ({stride_length}) must be less than half of chunk_length ({chunk_length})")
    duration = samples / sampling_rate
    starts = [0.0]
    while starts[-1] + chunk_length < duration:
        starts.append(starts[-1] + step)
    windows = []
    for index, start in enumerate(starts):
        first, last = index == 0, index == len(starts) - 1
        begin = round(start * sampling_rate)
        span = (begin, min(begin + round(chunk_length * sampling_rate), samples))
        owned = (
            -math.inf if first else start + stride_length,
            math.inf if last else start + chunk_length - stride_length,
        )
        windows.append(SpeechChunk((span,), sampling_rate, owned, closed=last))
    return windows


def map_to_file(segment: Any, chunk: SpeechChunk) -> None:
    """A segment (``start``, ``end``, ``words``, ``token_timestamps``) timed in the chunk's clip, moved to file
    time in place: a segment may run over seams (the silence between its sentences was cut out), a word stays
    in one span (:meth:`SpeechChunk.file_span`), and a segment with words runs from its first word to its last,
    as in openai-whisper, so a word brought back to its span does not leave the segment stretched over a seam."""
    segment.start = chunk.file_time(segment.start)
    segment.end = max(segment.start, chunk.file_time(segment.end, is_end=True))
    for word in segment.words:
        word.start, word.end = chunk.file_span(word.start, word.end)
    if segment.words:
        segment.start, segment.end = segment.words[0].start, max(word.end for word in segment.words)
    if segment.token_timestamps is not None:
        segment.token_timestamps = [chunk.file_time(time) for time in segment.token_timestamps]
