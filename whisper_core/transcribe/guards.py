"""Guards against Whisper's invented text: repetition loops, and segments timed past the end of the audio.

A model stuck in a loop repeats a phrase until the window's token budget runs out. openai-whisper
catches long loops by the zlib compression ratio of the whole window's text, but a short window
with a loop, or a loop after a long genuine sentence, stays under the ratio threshold; a run of one
n-gram repeated back to back is the loop itself, so it is looked for directly.

In the last window of a file the model hears real audio followed by padding; there it sometimes
repeats an earlier sentence and times it into the padding, past the end of the file (openai-whisper
and faster-whisper both do). A segment mostly outside the audio is such an invention and is dropped;
one that merely overruns the end is cut at it.

A batched piece sometimes times its last segment a second or two before its speech ends; the piece's
leftover then hears that speech again and the model says the sentence's last words a second time. A
segment that only repeats the end of a segment ending where it starts is that echo, and is dropped.

The other way round, in a full window the model often closes a segment seconds before the speech it was
given ends and stops, leaving the last sentence for another window (a whole encoder pass). Audio that
voice activity detection cut at a silence is speech to its end, so its decoding is held to it
(:func:`earliest_end`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

LOOP_MIN_TOKENS = 16  # a loop covers at least this many tokens ...
LOOP_MIN_REPEATS = 3  # ... in at least this many back-to-back copies of one n-gram
LOOP_MAX_NGRAM = 32
ECHO_GAP = 1.0  # seconds between the end of a segment and the start of one that repeats its last words
# A last segment's end timestamp often falls a second or so before its speech ends (base on the benchmark's
# speech: 0.7-1.5 s): a decoding that stops within this many seconds of the end has heard everything.
TAIL_SLACK = 2.0


def earliest_end(speech_seconds: float) -> float | None:
    """Where (s into a window) the decoding of speech that runs ``speech_seconds`` into the window may end at
    the earliest (``generate(earliest_end=...)``), or None when it may end anywhere. Only for audio known to
    be speech up to there: held over silence, the model would have to invent text."""
    end = speech_seconds - TAIL_SLACK
    return end if end > 0 else None


def has_repetition_loop(tokens: Sequence[int]) -> bool:
    """Whether some n-gram (n <= 32) repeats back to back at least ``max(3, ceil(16 / n))`` times: 16 copies
    of one token, 8 of a pair, ... 3 of a phrase of six tokens or more. Pass text tokens only (timestamps
    between the copies of a looping sentence differ)."""
    return loop_start(tokens) is not None


def loop_start(tokens: Sequence[int]) -> int | None:
    """Where the first repetition loop (see :func:`has_repetition_loop`) repeats its phrase: the index of the
    second copy, so ``tokens[:loop_start(tokens)]`` keeps what was said before the loop and its phrase once.
    None without a loop."""
    ids = np.asarray(tokens)
    starts = []
    for n in range(1, min(LOOP_MAX_NGRAM, len(ids) // LOOP_MIN_REPEATS) + 1):
        repeats = max(LOOP_MIN_REPEATS, -(-LOOP_MIN_TOKENS // n))
        needed = n * (repeats - 1)  # positions i with ids[i] == ids[i + n], in a row
        if len(ids) - n < needed:
            continue
        same = np.concatenate([[False], ids[n:] == ids[:-n], [False]])
        edges = np.flatnonzero(np.diff(same.astype(np.int8)))
        runs = np.flatnonzero(edges[1::2] - edges[::2] >= needed)
        if runs.size:
            starts.append(int(edges[::2][runs[0]]) + n)
    return min(starts) if starts else None


def fit_to_audio(segments: list[Any], duration: float) -> list[Any]:
    """The segments (``start``, ``end``, ``words``) that lie inside ``duration`` seconds of audio: a segment
    starting at the end or beyond, or lying more than half past it, is dropped; the others, and their words,
    are cut at the end."""
    kept = []
    for segment in segments:
        overrun = segment.end - duration
        if segment.start >= duration or overrun > (segment.end - segment.start) / 2:
            continue
        segment.end = min(segment.end, duration)
        segment.words = [word for word in segment.words if word.start < duration]
        for word in segment.words:
            word.end = min(word.end, duration)
        kept.append(segment)
    return kept


def echoes_an_end(segment: Any, earlier: Sequence[Any]) -> bool:
    """Whether ``segment`` (``text``, ``start``) says nothing but the last words of a segment in ``earlier`` that
    ends within :data:`ECHO_GAP` of where it starts (words compared without case or punctuation)."""
    words = _plain_words(segment.text)
    return bool(words) and any(
        abs(segment.start - other.end) <= ECHO_GAP and _plain_words(other.text)[-len(words) :] == words
        for other in earlier
    )


def _plain_words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())
