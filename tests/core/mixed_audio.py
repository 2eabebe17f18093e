"""About three minutes of speech interleaved with noise, tones and silence, and where each piece lies.

For VAD and hallucination tests: the jfk sample (real speech) and eight espeak-ng sentences, separated
by non-speech stretches of 3-8 s that sox generates (white, pink and brown noise, a quiet hiss, steady
tones, a square wave, a sweep) or that are digital silence. The audio ends in 4 s of digital silence,
so a window or a VAD span can run into silence at the very end.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tests.conftest import JFK_TEXT, synthesize
from tests.core.longform_audio import Clip, LongAudio, _voiced_span
from whisper_core import SAMPLE_RATE, load_audio

SENTENCES = (
    "The ferry leaves the harbour at seven, and the crossing takes about an hour.",
    "Please write your name at the top of every page before you begin the test.",
    "A family of foxes lives under the old barn at the end of our road.",
    "The bakery sells out of cinnamon rolls before nine on Saturday mornings.",
    "Heavy clouds rolled in from the west, and the first drops of rain began to fall.",
    "My grandmother kept every letter she received in a wooden box under her bed.",
    "The new bridge will carry trains across the river by the end of next year.",
    "Turn left at the fountain, walk two blocks, and the post office is on your right.",
)
# The sox `synth` arguments for each kind of non-speech; "silence" is digital zeros instead.
SOX_SYNTH = {
    "white_noise": ("whitenoise", "vol", "0.3"),
    "pink_noise": ("pinknoise", "vol", "0.3"),
    "brown_noise": ("brownnoise", "vol", "0.3"),
    "hiss": ("whitenoise", "vol", "0.01"),  # quiet background hiss, the classic hallucination trigger
    "sine_440": ("sine", "440", "vol", "0.5"),
    "sine_1000": ("sine", "1000", "vol", "0.3"),
    "square_220": ("square", "220", "vol", "0.3"),
    "sweep": ("sine", "100-4000", "vol", "0.5"),
}
SILENCE = "silence"
# Non-speech (kind, seconds) before each spoken clip: jfk, then the sentences in order.
GAPS = (
    ((SILENCE, 3.0),),
    (("white_noise", 6.0), (SILENCE, 3.0)),
    (("sine_440", 5.0), ("pink_noise", 7.0)),
    (("sweep", 6.0), (SILENCE, 4.0), ("hiss", 8.0)),
    (("brown_noise", 5.0), ("square_220", 4.0)),
    (("pink_noise", 8.0), ("sine_1000", 3.0), (SILENCE, 5.0)),
    (("hiss", 7.0), ("white_noise", 4.0)),
    (("square_220", 6.0), ("sweep", 5.0), ("brown_noise", 6.0)),
    (("sine_440", 3.0), (SILENCE, 8.0), ("white_noise", 5.0)),
)
# After the last sentence; the audio ends in 4 s of digital silence.
TAIL = (("hiss", 5.0), ("pink_noise", 4.0), ("sine_1000", 4.0), (SILENCE, 4.0))
CACHE_AUDIO = "mixed_audio.npy"
CACHE_LAYOUT = "mixed_audio.json"


@dataclass(frozen=True)
class Stretch:
    """One stretch of non-speech: its kind (a key of SOX_SYNTH, or "silence") and where it lies (seconds)."""

    kind: str
    start: float
    end: float


@dataclass(frozen=True)
class MixedAudio(LongAudio):
    """Speech clips (the voiced part of each) and, between them, the non-speech stretches."""

    stretches: tuple[Stretch, ...]  # in order; neighbours may touch (noise straight into silence)


def _layout_fingerprint() -> str:
    """Changes whenever the recipe does, so a cache built from an older recipe is rebuilt."""
    recipe = repr((JFK_TEXT, SENTENCES, sorted(SOX_SYNTH.items()), GAPS, TAIL))
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def non_speech(kind: str, seconds: float, directory: Path) -> np.ndarray:
    """``seconds`` of one kind of non-speech at 16 kHz (sox -R seeds its noise, so builds repeat exactly)."""
    if kind == SILENCE:
        return np.zeros(round(seconds * SAMPLE_RATE), np.float32)
    sox = shutil.which("sox")
    assert sox, "sox is not installed: run `make install`"
    path = directory / f"{kind}_{seconds:g}s.wav"
    command = [sox, "-R", "-n", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(path), "synth", f"{seconds:g}"]
    subprocess.run([*command, *SOX_SYNTH[kind]], check=True, capture_output=True)
    return load_audio(path)


def _assemble(directory: Path, jfk_path: Path) -> MixedAudio:
    spoken = [(JFK_TEXT, load_audio(jfk_path))]
    for index, sentence in enumerate(SENTENCES):
        spoken.append((sentence, load_audio(synthesize(sentence, "en", directory, f"mixed_{index}"))))
    pieces: list[np.ndarray] = []
    clips: list[Clip] = []
    stretches: list[Stretch] = []

    def add_non_speech(gap: tuple[tuple[str, float], ...]) -> None:
        for kind, seconds in gap:
            start = sum(map(len, pieces))
            pieces.append(non_speech(kind, seconds, directory))
            stretches.append(Stretch(kind, start / SAMPLE_RATE, (start + len(pieces[-1])) / SAMPLE_RATE))

    for gap, (text, samples) in zip(GAPS, spoken, strict=True):
        add_non_speech(gap)
        position = sum(map(len, pieces))
        first, last = _voiced_span(samples)
        clips.append(Clip(text, (position + first) / SAMPLE_RATE, (position + last) / SAMPLE_RATE))
        pieces.append(samples)
    add_non_speech(TAIL)
    return MixedAudio(np.concatenate(pieces), tuple(clips), tuple(stretches))


def _save(mixed: MixedAudio, directory: Path) -> None:
    np.save(directory / CACHE_AUDIO, mixed.audio)
    layout = {
        "fingerprint": _layout_fingerprint(),
        "clips": [asdict(clip) for clip in mixed.clips],
        "stretches": [asdict(stretch) for stretch in mixed.stretches],
    }
    (directory / CACHE_LAYOUT).write_text(json.dumps(layout, indent=1))


def _load_cached(directory: Path) -> MixedAudio | None:
    """The audio built earlier into ``directory``, or None when there is none from this recipe."""
    audio_path, layout_path = directory / CACHE_AUDIO, directory / CACHE_LAYOUT
    if not (audio_path.is_file() and layout_path.is_file()):
        return None
    layout = json.loads(layout_path.read_text())
    if layout.get("fingerprint") != _layout_fingerprint():
        return None
    clips = tuple(Clip(**clip) for clip in layout["clips"])
    stretches = tuple(Stretch(**stretch) for stretch in layout["stretches"])
    return MixedAudio(np.load(audio_path), clips, stretches)


def build_mixed_audio(directory: Path, jfk_path: Path) -> MixedAudio:
    """The mixed audio (about 2.9 minutes), built into ``directory`` once and read back from there after."""
    cached = _load_cached(directory)
    if cached is not None:
        return cached
    mixed = _assemble(directory, jfk_path)
    _save(mixed, directory)
    return mixed
