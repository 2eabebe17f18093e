"""Word-level timestamps from the cross-attention of the alignment heads, as openai-whisper computes them.

A few decoder heads (``generation_config.alignment_heads``) attend to the audio frames where each
token is spoken. Their weights over the window's real frames are standardised per frame, smoothed
by a median filter along time and averaged; dynamic time warping then finds the monotonic path of
highest attention from tokens to frames. A token starts where the path first reaches its row;
tokens are grouped into words, punctuation is merged into its neighbours, and openai-whisper's
heuristics trim implausibly long words at pauses and sentence ends.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TOKENS_PER_SECOND = 50  # encoder frames per second (two mel frames of 10 ms each)
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
SENTENCE_END_MARKS = ".。!！?？"
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}


@dataclass
class WordTiming:
    """A word (with its leading space), its tokens, its time span in seconds and its mean token probability."""

    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


@dataclass
class Alignment:
    """What one teacher-forced pass over a window gives: words, and the start time of every text token."""

    words: list[WordTiming]
    token_starts: list[float] = field(default_factory=list)


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median of each ``width``-wide window along the last axis, edges reflected (openai-whisper's filter)."""
    if width < 1 or width % 2 == 0:
        raise ValueError(f"the median filter width must be a positive odd number, got {width}")
    half = width // 2
    if x.shape[-1] <= half:  # too short to reflect
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)], mode="reflect")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1), axis=-1)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest monotonic path through ``cost [tokens, frames]`` from corner to corner.

    Returns the (token, frame) index pairs of the path. Cells on one anti-diagonal depend only on the
    two before it, so each diagonal is computed at once; ties prefer a horizontal step, then a
    vertical one, as openai-whisper's ``dtw_cpu`` does.
    """
    rows, cols = cost.shape
    total = np.full((rows + 1, cols + 1), np.inf)
    total[0, 0] = 0.0
    trace = np.zeros((rows + 1, cols + 1), dtype=np.int8)  # 0 diagonal, 1 from above, 2 from the left
    for diagonal in range(2, rows + cols + 1):
        i = np.arange(max(1, diagonal - cols), min(rows, diagonal - 1) + 1)
        j = diagonal - i
        both = total[i - 1, j - 1]
        above = total[i - 1, j]
        left = total[i, j - 1]
        step = np.where((both < above) & (both < left), 0, np.where((above < both) & (above < left), 1, 2))
        total[i, j] = cost[i - 1, j - 1] + np.choose(step, [both, above, left])
        trace[i, j] = step
    trace[0, :], trace[:, 0] = 2, 1
    path = []
    i, j = rows, cols
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        move = trace[i, j]
        i, j = i - (move != 2), j - (move != 1)
    indices = np.array(path[::-1], dtype=np.int64).reshape(-1, 2)
    return indices[:, 0], indices[:, 1]


def attention_cost(weights: np.ndarray, num_frames: int, medfilt_width: int = 7) -> np.ndarray:
    """``weights [heads, tokens, 1500]`` (softmaxed over all frames) -> the alignment score ``[tokens, frames]``.

    Renormalising over the window's real frames equals openai-whisper's softmax of the raw scores
    restricted to them; each frame is then standardised over the tokens and smoothed along time.
    """
    weights = weights[:, :, : num_frames // 2].astype(np.float64)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    mean = weights.mean(axis=-2, keepdims=True)
    std = weights.std(axis=-2, keepdims=True)
    weights = (weights - mean) / std
    return median_filter(weights, medfilt_width).mean(axis=0)


def split_tokens_on_unicode(tokenizer: Any, tokens: Sequence[int]) -> tuple[list[str], list[list[int]]]:
    """Group tokens into whole characters: a multi-byte character may span several tokens."""
    words: list[str] = []
    groups: list[list[int]] = []
    current: list[int] = []
    full = tokenizer.decode(list(tokens))
    offset = 0
    for token in tokens:
        current.append(token)
        text = tokenizer.decode(current)
        if "\ufffd" not in text or full[offset + text.index("\ufffd")] == "\ufffd":
            words.append(text)
            groups.append(current)
            current = []
            offset += len(text)
    return words, groups


def split_to_word_tokens(
    tokenizer: Any, tokens: Sequence[int], language: str | None
) -> tuple[list[str], list[list[int]]]:
    """Words and their tokens: split on spaces and punctuation, or per character in unspaced scripts."""
    subwords, groups = split_tokens_on_unicode(tokenizer, tokens)
    if language in NO_SPACE_LANGUAGES:
        return subwords, groups
    eot = tokenizer.eos_token_id
    words: list[str] = []
    word_tokens: list[list[int]] = []
    for subword, group in zip(subwords, groups, strict=True):
        starts_word = group[0] >= eot or subword.startswith(" ") or subword.strip() in string.punctuation
        if starts_word or not words:
            words.append(subword)
            word_tokens.append(list(group))
        else:
            words[-1] += subword
            word_tokens[-1].extend(group)
    return words, word_tokens


def find_alignment(
    tokenizer: Any,
    text_tokens: Sequence[int],
    weights: np.ndarray,
    logits: np.ndarray | None,
    num_frames: int,
    sot_length: int,
    language: str | None,
    medfilt_width: int = 7,
) -> Alignment:
    """Align ``text_tokens`` to time (seconds from the window start).

    ``weights [heads, T, 1500]`` and ``logits [T, vocab]`` come from one pass over
    ``start sequence (sot_length tokens) + <|notimestamps|> + text_tokens + <|endoftext|>``. Without
    ``logits`` (a pass that skipped the output projection) every word's probability is NaN.
    """
    if not text_tokens:
        return Alignment([])
    eot = tokenizer.eos_token_id
    token_probs = np.full(len(text_tokens), np.nan)
    if logits is not None:
        predicted = logits[sot_length : sot_length + len(text_tokens), :eot].astype(np.float64)
        predicted = np.exp(predicted - predicted.max(axis=-1, keepdims=True))
        predicted /= predicted.sum(axis=-1, keepdims=True)
        token_probs = predicted[np.arange(len(text_tokens)), list(text_tokens)]

    matrix = attention_cost(weights, num_frames, medfilt_width)[sot_length:-1]  # text tokens + <|endoftext|>
    text_indices, time_indices = dtw(-matrix)
    jumps = np.diff(text_indices, prepend=-1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND  # where each token row is first reached

    words, word_tokens = split_to_word_tokens(tokenizer, [*text_tokens, eot], language)
    if len(word_tokens) <= 1:
        return Alignment([], jump_times[: len(text_tokens)].tolist())
    boundaries = np.concatenate([[0], np.cumsum([len(tokens) for tokens in word_tokens[:-1]])])
    # The last word is <|endoftext|>: it has no end boundary, so zip stops before it.
    timings = [
        WordTiming(word, tokens, float(jump_times[start]), float(jump_times[end]), float(token_probs[start:end].mean()))
        for word, tokens, start, end in zip(words, word_tokens, boundaries[:-1], boundaries[1:], strict=False)
    ]
    return Alignment(timings, jump_times[: len(text_tokens)].tolist())


def merge_punctuations(alignment: list[WordTiming], prepended: str, appended: str) -> None:
    """Attach opening punctuation to the next word and closing punctuation to the previous one, in place;
    a merged-away entry keeps an empty word and no tokens."""
    following = len(alignment) - 1
    for index in range(len(alignment) - 2, -1, -1):
        previous, nxt = alignment[index], alignment[following]
        if previous.word.startswith(" ") and previous.word.strip() in prepended:
            nxt.word, nxt.tokens = previous.word + nxt.word, previous.tokens + nxt.tokens
            previous.word, previous.tokens = "", []
        else:
            following = index
    preceding = 0
    for index in range(1, len(alignment)):
        previous, nxt = alignment[preceding], alignment[index]
        if not previous.word.endswith(" ") and nxt.word in appended:
            previous.word, previous.tokens = previous.word + nxt.word, previous.tokens + nxt.tokens
            nxt.word, nxt.tokens = "", []
        else:
            preceding = index


def clip_long_words(alignment: list[WordTiming]) -> float:
    """Trim words at sentence ends to twice the median word duration (at most 0.7 s); return that median."""
    durations = np.array([timing.end - timing.start for timing in alignment])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    longest = median * 2
    if len(durations):
        for index in range(1, len(alignment)):
            timing = alignment[index]
            if timing.end - timing.start > longest:
                if timing.word in SENTENCE_END_MARKS:
                    timing.end = timing.start + longest
                elif alignment[index - 1].word in SENTENCE_END_MARKS:
                    timing.start = timing.end - longest
    return median


def assign_words(
    segments: Sequence[Any],
    alignment: list[WordTiming],
    time_offset: float,
    median: float,
    last_speech: float,
) -> None:
    """Give each segment (``start``, ``end``, ``text_tokens``, ``words`` attributes) its words in absolute time and
    reconcile word and segment boundaries as openai-whisper does; ``last_speech`` is where speech last ended."""
    longest = median * 2
    index = 0
    for segment in segments:
        saved = 0
        words: list[WordTiming] = []
        while index < len(alignment) and saved < len(segment.text_tokens):
            timing = alignment[index]
            if timing.word:
                words.append(
                    WordTiming(
                        timing.word,
                        timing.tokens,
                        round(time_offset + timing.start, 2),
                        round(time_offset + timing.end, 2),
                        timing.probability,
                    )
                )
            saved += len(timing.tokens)
            index += 1
        if words:
            _trim_after_pause(words, last_speech, median, longest)
            first, last = words[0], words[-1]
            if segment.start < first.end and segment.start - 0.5 > first.start:  # first word too long
                first.start = max(0.0, min(first.end - median, segment.start))
            else:
                segment.start = first.start
            if segment.end > last.start and segment.end + 0.5 < last.end:  # last word too long
                last.end = max(last.start + median, segment.end)
            else:
                segment.end = last.end
            last_speech = segment.end
        segment.words = words


def _trim_after_pause(words: list[WordTiming], last_speech: float, median: float, longest: float) -> None:
    """After a pause, the first (and second) word may swallow the silence: cut them to a plausible length."""
    first = words[0]
    second_too_long = len(words) > 1 and words[1].end - first.start > longest * 2
    if first.end - last_speech > median * 4 and (first.end - first.start > longest or second_too_long):
        if len(words) > 1 and words[1].end - words[1].start > longest:
            boundary = max(words[1].end / 2, words[1].end - longest)
            first.end = words[1].start = boundary
        first.start = max(0.0, first.end - longest)
