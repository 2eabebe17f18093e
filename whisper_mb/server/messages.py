"""What a live client is told, shaped as WhisperLiveKit's messages so its clients work unchanged.

Every update carries the whole transcript so far as ``lines`` (committed words grouped into sentences,
each with ``speaker``, ``text``, ``start``, ``end`` as ``H:MM:SS.cc``) and the pending words as
``buffer_transcription``; the stream ends with a last update and ``{"type": "ready_to_stop"}``.
"""

from __future__ import annotations

from collections.abc import Sequence

from whisper_core.streaming import StreamWord
from whisper_core.streaming.online import SENTENCE_ENDS

LINE_PAUSE = 2.0  # s of silence between two words also starts a new line
SPEAKER = 1  # no diarization: every line is WhisperLiveKit's default speaker


def format_time(seconds: float) -> str:
    """``75.3`` -> ``0:01:15.30`` (WhisperLiveKit's ``H:MM:SS.cc``)."""
    centiseconds = round(max(seconds, 0.0) * 100)
    whole, centi = divmod(centiseconds, 100)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}.{centi:02d}"


def lines_of(words: Sequence[StreamWord]) -> list[dict]:
    """Committed words as lines: a line ends with a sentence or before a long pause."""
    lines: list[dict] = []
    current: list[StreamWord] = []
    for word in words:
        if current and word.start - current[-1].end > LINE_PAUSE:
            lines.append(_line(current))
            current = []
        current.append(word)
        if word.text.rstrip().endswith(SENTENCE_ENDS):
            lines.append(_line(current))
            current = []
    if current:
        lines.append(_line(current))
    return lines


def _line(words: list[StreamWord]) -> dict:
    return {
        "speaker": SPEAKER,
        "text": "".join(word.text for word in words),
        "start": format_time(words[0].start),
        "end": format_time(words[-1].end),
    }


def update(committed: Sequence[StreamWord], pending: Sequence[StreamWord], lag: float) -> dict:
    """One WhisperLiveKit front-end update; ``lag`` is how much received audio is not decoded yet (s)."""
    lines = lines_of(committed)
    buffer = "".join(word.text for word in pending)
    return {
        "status": "active_transcription" if lines or buffer else "no_audio_detected",
        "lines": lines,
        "buffer_transcription": buffer,
        "buffer_diarization": "",
        "remaining_time_transcription": round(max(lag, 0.0), 2),
        "remaining_time_diarization": 0,
    }


def tcp_line(words: Sequence[StreamWord]) -> str:
    """whisper_streaming's server line for one commit: ``"beg_ms end_ms text"``."""
    text = "".join(word.text for word in words).strip()
    return f"{round(words[0].start * 1000)} {round(words[-1].end * 1000)} {text}\n"
