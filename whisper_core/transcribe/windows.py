"""Where a 30 s window's tokens cut into segments (openai-whisper's rule), and which frames ``clip_timestamps``
asks to decode: shared by the sequential loop (:mod:`.longform`) and batched pieces (:mod:`.batched`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WindowSplit:
    """How the tokens of one window become segments, and how far ``seek`` moves."""

    segments: list[tuple[float, float, list[int]]]  # (start, end, tokens) in seconds from the file start
    advance: int  # mel frames
    single_timestamp_ending: bool
    # The tokens after the last closed segment, which the window cut off: the sequential loop decodes
    # them again from the next ``seek``; a batched piece keeps them when no later piece follows.
    unfinished: list[int] = field(default_factory=list)


def split_window(
    tokens: Sequence[int],
    timestamp_begin: int,
    time_offset: float,
    segment_frames: int,
    input_stride: int = 2,
    time_precision: float = 0.02,
) -> WindowSplit:
    """openai-whisper's segmentation of a window's generated ids (no ``<|endoftext|>``).

    Consecutive timestamps close one segment and open the next. A window ending on a lone
    timestamp has no speech after it: ``seek`` jumps to the window's end; otherwise the unfinished
    last segment is dropped and ``seek`` goes to the last closing timestamp. Without consecutive
    timestamps the whole window is one segment, ending at its last timestamp when there is one.
    """
    tokens = list(tokens)
    is_time = [token >= timestamp_begin for token in tokens]
    single_ending = is_time[-2:] == [False, True]
    cuts = [index + 1 for index in range(len(tokens) - 1) if is_time[index] and is_time[index + 1]]
    if not cuts:
        times = [token for token in tokens if token >= timestamp_begin]
        duration = segment_frames * time_precision / input_stride
        if times and times[-1] != timestamp_begin:
            duration = (times[-1] - timestamp_begin) * time_precision
        return WindowSplit([(time_offset, time_offset + duration, tokens)], segment_frames, single_ending)
    if single_ending:
        cuts.append(len(tokens))
    segments = []
    previous = 0
    for cut in cuts:
        piece = tokens[previous:cut]
        start = time_offset + (piece[0] - timestamp_begin) * time_precision
        end = time_offset + (piece[-1] - timestamp_begin) * time_precision
        segments.append((start, end, piece))
        previous = cut
    advance = segment_frames if single_ending else (tokens[previous - 1] - timestamp_begin) * input_stride
    return WindowSplit(segments, advance, single_ending, tokens[previous:])


def clip_ranges(
    clip_timestamps: Sequence[float], content_frames: int, frames_per_second: int = 100
) -> list[tuple[int, int]]:
    """``start, end, start, end, ...`` seconds -> mel frame ranges; an open last clip runs to the end."""
    points = [round(seconds * frames_per_second) for seconds in clip_timestamps] or [0]
    if len(points) % 2:
        points.append(content_frames)
    return list(zip(points[::2], points[1::2], strict=True))
