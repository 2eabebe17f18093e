"""Split generated token ids into timestamped segments (the timestamp maths, once for every backend)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TIME_PRECISION = 0.02  # seconds per timestamp token


@dataclass(frozen=True)
class Segment:
    """Text tokens between a start and an end timestamp (``end`` is None when decoding stopped mid-segment)."""

    start: float
    end: float | None
    tokens: tuple[int, ...]


def split_segments(
    tokens: Sequence[int],
    timestamp_begin: int,
    eos_token_id: int,
    *,
    offset: float = 0.0,
    time_precision: float = TIME_PRECISION,
) -> list[Segment]:
    """``<|t0|> text <|t1|><|t1|> text <|t2|>`` -> segments (t0, t1) and (t1, t2), shifted by ``offset`` s.

    ``tokens`` are the generated ids (no prefix); they are read up to ``<|endoftext|>``. Text before
    any timestamp starts at ``offset``; text after the last timestamp has no end.
    """
    segments: list[Segment] = []
    start: float | None = None
    text: list[int] = []
    for token in tokens:
        if token == eos_token_id:
            break
        if token < timestamp_begin:
            text.append(token)
            continue
        time = offset + (token - timestamp_begin) * time_precision
        if start is None:
            if text:  # text before the first timestamp
                segments.append(Segment(offset, time, tuple(text)))
                text = []
            start = time
        else:
            segments.append(Segment(start, time, tuple(text)))
            start, text = None, []
    if text:
        segments.append(Segment(offset if start is None else start, None, tuple(text)))
    return segments
