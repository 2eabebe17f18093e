"""About two minutes of real and synthesized speech with silences, and where each clip was placed.

The jfk sample (real speech) appears twice; espeak-ng speaks the other sentences. Silences of
different lengths separate the clips, so windows end in silence, mid-speech and on clip edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.conftest import JFK_TEXT, synthesize
from whisper_core import SAMPLE_RATE, load_audio

SENTENCES = (
    "The museum opens early on weekdays, and the guided tours start after lunch.",
    "Please remember to water the tomatoes before the sun gets too hot in the afternoon.",
    "Our train was delayed because of snow on the tracks near the mountain pass.",
    "She painted the small kitchen yellow and hung a clock above the door.",
    "Most birds in this valley migrate south when the nights become cold.",
    "He forgot his umbrella at the station, so he walked home in the rain.",
    "The library will be closed next Monday for a public holiday.",
    "Fresh bread from the corner bakery is the best way to start a morning.",
    "The children built a tall castle of sand and waited for the tide to reach it.",
    "A quiet river runs through the old town, under seven stone bridges.",
    "Remember to lock the garden gate when you leave in the evening.",
    "The orchestra practised the final movement until everyone knew it by heart.",
    "Strong coffee and a good book make a long journey feel much shorter.",
)
# Seconds of silence before each clip: jfk, the sentences, jfk again.
GAPS = (0.5, 1.5, 3.0, 0.8, 5.0, 1.2, 2.0, 7.0, 1.0, 2.5, 0.6, 4.0, 1.5, 9.0, 2.0)


@dataclass(frozen=True)
class Clip:
    """One spoken piece: its text and where speech starts and ends in the long audio (seconds)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class LongAudio:
    audio: np.ndarray  # 16 kHz mono float32
    clips: tuple[Clip, ...]

    @property
    def text(self) -> str:
        return " ".join(clip.text for clip in self.clips)

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def _voiced_span(samples: np.ndarray) -> tuple[int, int]:
    """First and last sample louder than 2% of the clip's peak (the clip's own padding is not speech)."""
    loud = np.flatnonzero(np.abs(samples) > 0.02 * np.abs(samples).max())
    return int(loud[0]), int(loud[-1]) + 1


def build_long_audio(directory: Path, jfk_path: Path) -> LongAudio:
    """Concatenate silence, jfk, the sentences and jfk again (a little over 2 minutes)."""
    jfk = load_audio(jfk_path)
    spoken = [(JFK_TEXT, jfk)]
    for index, sentence in enumerate(SENTENCES):
        spoken.append((sentence, load_audio(synthesize(sentence, "en", directory, f"longform_{index}"))))
    spoken.append((JFK_TEXT, jfk))
    pieces, clips, position = [], [], 0
    for gap, (text, samples) in zip(GAPS, spoken, strict=True):
        silence = np.zeros(round(gap * SAMPLE_RATE), np.float32)
        first, last = _voiced_span(samples)
        pieces.extend([silence, samples])
        position += len(silence)
        clips.append(Clip(text, (position + first) / SAMPLE_RATE, (position + last) / SAMPLE_RATE))
        position += len(samples)
    pieces.append(np.zeros(SAMPLE_RATE, np.float32))
    return LongAudio(np.concatenate(pieces), tuple(clips))
