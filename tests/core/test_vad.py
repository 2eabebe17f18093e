"""Silero VAD on onnxruntime against faster-whisper 1.2.1's own, on real speech and on speech between noise.

faster-whisper is the reference here only; the library finds its ONNX file without importing it.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.core.mixed_audio import SOX_SYNTH, MixedAudio, Stretch, non_speech
from whisper_core import SAMPLE_RATE
from whisper_core.vad import (
    FRAME_SAMPLES,
    FRAMES_PER_RUN,
    MODEL_FILE,
    SpeechSpan,
    VadOptions,
    get_speech_timestamps,
    load_silero_vad,
    silero_model_path,
)

OPTION_SETS = {
    "defaults": {},
    "low-threshold-short-pad": {"threshold": 0.3, "speech_pad_ms": 100},
    "short-silence-10s-max": {"min_silence_duration_ms": 500, "max_speech_duration_s": 10},
    # cuts spans often, both at silences and mid-speech, and drops short ones
    "aggressive": {"min_silence_duration_ms": 100, "max_speech_duration_s": 2, "speech_pad_ms": 30},
    "min-speech-neg-threshold": {"min_speech_duration_ms": 250, "neg_threshold": 0.2, "min_silence_duration_ms": 300},
}


@pytest.fixture(scope="module")
def reference_vad() -> ModuleType:
    return pytest.importorskip("faster_whisper.vad")


def reference_spans(reference_vad: ModuleType, audio: np.ndarray, options: dict) -> list[tuple[int, int]]:
    spans = reference_vad.get_speech_timestamps(audio, reference_vad.VadOptions(**options))
    return [(span["start"], span["end"]) for span in spans]


def our_spans(audio: np.ndarray, options: dict) -> list[tuple[int, int]]:
    return [(span.start, span.end) for span in get_speech_timestamps(audio, VadOptions(**options))]


def reference_probabilities(reference_vad: ModuleType, audio: np.ndarray) -> np.ndarray:
    """faster-whisper's model wrapper on the audio padded as its get_speech_timestamps pads it."""
    padded = np.pad(audio, (0, FRAME_SAMPLES - len(audio) % FRAME_SAMPLES))
    return reference_vad.get_vad_model()(padded)


def seconds(span: SpeechSpan) -> tuple[float, float]:
    return span.start / SAMPLE_RATE, span.end / SAMPLE_RATE


def non_speech_regions(stretches: tuple[Stretch, ...]) -> list[tuple[float, float]]:
    """Touching stretches (noise straight into silence) merged into one region each."""
    regions: list[tuple[float, float]] = []
    for stretch in stretches:
        if regions and math.isclose(regions[-1][1], stretch.start):
            regions[-1] = (regions[-1][0], stretch.end)
        else:
            regions.append((stretch.start, stretch.end))
    return regions


# --- options ---------------------------------------------------------------------------------------------


def test_options_have_faster_whispers_names_and_defaults(reference_vad):
    ours = {field.name: getattr(VadOptions(), field.name) for field in dataclasses.fields(VadOptions)}
    reference = {
        field.name: getattr(reference_vad.VadOptions(), field.name)
        for field in dataclasses.fields(reference_vad.VadOptions)
    }
    assert ours == reference
    assert ours == {
        "threshold": 0.5,
        "neg_threshold": None,
        "min_speech_duration_ms": 0,
        "max_speech_duration_s": math.inf,
        "min_silence_duration_ms": 2000,
        "speech_pad_ms": 400,
    }


def test_neg_threshold_defaults_below_threshold_with_a_floor():
    assert VadOptions().effective_neg_threshold == pytest.approx(0.35)
    assert VadOptions(threshold=0.1).effective_neg_threshold == 0.01
    assert VadOptions(threshold=0.6, neg_threshold=0.2).effective_neg_threshold == 0.2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("threshold", 0.0),
        ("threshold", 1.0),
        ("threshold", 1.5),
        ("threshold", -0.2),
        ("threshold", math.nan),
        ("threshold", "0.5"),
        ("neg_threshold", 0.0),
        ("neg_threshold", 1.2),
        ("min_speech_duration_ms", -1),
        ("min_speech_duration_ms", math.inf),
        ("min_silence_duration_ms", -100),
        ("speech_pad_ms", -1),
        ("speech_pad_ms", True),
        ("max_speech_duration_s", 0),
        ("max_speech_duration_s", -3.0),
        ("max_speech_duration_s", math.nan),
    ],
)
def test_options_reject_values_out_of_range(name, value):
    with pytest.raises(ValueError, match=name):
        VadOptions(**{name: value})


def test_options_accept_the_edges_of_their_ranges():
    VadOptions(threshold=0.01, neg_threshold=0.99, min_speech_duration_ms=0, speech_pad_ms=0, max_speech_duration_s=0.5)


# --- the model file and loading --------------------------------------------------------------------------


def test_model_path_is_the_file_faster_whisper_ships():
    from faster_whisper.utils import get_assets_path

    path = silero_model_path()
    assert path.name == MODEL_FILE and path.is_file()
    assert path.resolve() == (Path(get_assets_path()) / MODEL_FILE).resolve()


def test_missing_faster_whisper_says_which_extra_to_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match=r"whisper-multibackend\[vad\]"):
        silero_model_path()


def test_a_wheel_without_the_file_says_which_version_ships_it(monkeypatch, tmp_path):
    old_wheel = SimpleNamespace(version="1.1.0", files=[], locate_file=lambda entry: tmp_path / str(entry))
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: old_wheel)
    with pytest.raises(FileNotFoundError, match=r"1\.1\.0 does not ship silero_vad_v6\.onnx.*\[vad\]"):
        silero_model_path()


def test_the_model_is_loaded_once_per_process():
    assert load_silero_vad() is load_silero_vad()


def test_speech_timestamps_never_import_faster_whisper(jfk_path):
    """The ONNX file is found from the wheel's metadata: faster_whisper (and CTranslate2) stay unloaded."""
    code = (
        "import sys\n"
        "from whisper_core import load_audio\n"
        "from whisper_core.vad import get_speech_timestamps\n"
        f"spans = get_speech_timestamps(load_audio({str(jfk_path)!r}))\n"
        "loaded = [m for m in ('faster_whisper', 'ctranslate2', 'torch', 'tensorflow', 'jax') if m in sys.modules]\n"
        "print(len(spans), loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "1 []"


# --- probabilities and spans match faster-whisper ---------------------------------------------------------


@pytest.mark.parametrize(
    "length",
    [1, 300, FRAME_SAMPLES, 100 * FRAME_SAMPLES, 100 * FRAME_SAMPLES + 449, 100 * FRAME_SAMPLES + 511, 176000],
)
def test_probabilities_equal_faster_whispers_at_every_padding(reference_vad, jfk_audio, length):
    """Lengths that fit the frames exactly, and ones whose last 64 real samples fall in the zeroed tail."""
    audio = jfk_audio[:length]
    ours = load_silero_vad().speech_probabilities(audio)
    assert ours.shape == (length // FRAME_SAMPLES + 1,)
    np.testing.assert_array_equal(ours, reference_probabilities(reference_vad, audio))


@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_spans_on_jfk_equal_faster_whispers(reference_vad, jfk_audio, options):
    ours = get_speech_timestamps(jfk_audio, VadOptions(**options))
    assert [(span.start, span.end) for span in ours] == reference_spans(reference_vad, jfk_audio, options)
    assert ours and all(type(span.start) is int and type(span.end) is int for span in ours)


@pytest.mark.parametrize("length", [20000, 100 * FRAME_SAMPLES, 100 * FRAME_SAMPLES + 500])
def test_spans_on_cut_jfk_equal_faster_whispers(reference_vad, jfk_audio, length):
    """Audio that stops mid-speech: the last span is closed at the end of the audio."""
    for options in OPTION_SETS.values():
        assert our_spans(jfk_audio[:length], options) == reference_spans(reference_vad, jfk_audio[:length], options)


@pytest.mark.slow
@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_spans_on_mixed_audio_equal_faster_whispers(reference_vad, mixed_audio: MixedAudio, options):
    assert our_spans(mixed_audio.audio, options) == reference_spans(reference_vad, mixed_audio.audio, options)


@pytest.mark.slow
def test_audio_longer_than_one_model_run_equals_faster_whisper(reference_vad, mixed_audio: MixedAudio):
    """Over 10000 frames the model runs more than once, carrying its LSTM state across."""
    audio = np.concatenate([mixed_audio.audio, mixed_audio.audio])
    assert len(audio) // FRAME_SAMPLES + 1 > FRAMES_PER_RUN
    np.testing.assert_array_equal(
        load_silero_vad().speech_probabilities(audio), reference_probabilities(reference_vad, audio)
    )
    assert our_spans(audio, {}) == reference_spans(reference_vad, audio, {})


# --- spans on speech between noise, tones and silence ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_no_span_lies_wholly_in_non_speech(mixed_audio: MixedAudio, options):
    spans = get_speech_timestamps(mixed_audio.audio, VadOptions(**options))
    for start, end in map(seconds, spans):
        inside = [
            region for region in non_speech_regions(mixed_audio.stretches) if region[0] <= start and end <= region[1]
        ]
        assert not inside, f"span {start:.2f}-{end:.2f} s lies in non-speech {inside}"


@pytest.mark.slow
@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_every_spoken_clip_overlaps_a_span(mixed_audio: MixedAudio, options):
    spans = [seconds(span) for span in get_speech_timestamps(mixed_audio.audio, VadOptions(**options))]
    for clip in mixed_audio.clips:
        assert any(start < clip.end and clip.start < end for start, end in spans), clip


@pytest.mark.slow
def test_default_options_give_one_span_per_clip(mixed_audio: MixedAudio):
    """Every clip is at least 3 s of non-speech from the next, longer than the default 2 s silence."""
    spans = [seconds(span) for span in get_speech_timestamps(mixed_audio.audio)]
    assert len(spans) == len(mixed_audio.clips)
    for (start, end), clip in zip(spans, mixed_audio.clips, strict=True):
        assert start < clip.end and clip.start < end, (start, end, clip)
    assert spans[-1][1] < mixed_audio.duration - 4.0  # the closing silence stays out of every span


# --- audio with no speech, and bad audio -------------------------------------------------------------------


@pytest.mark.parametrize("kind", [*SOX_SYNTH, "silence"])
def test_noise_tones_and_silence_alone_have_no_speech(tmp_path, kind):
    audio = non_speech(kind, 6.0, tmp_path)
    assert get_speech_timestamps(audio) == []
    assert get_speech_timestamps(audio, VadOptions(threshold=0.3, speech_pad_ms=100)) == []


def test_numpy_white_noise_has_no_speech():
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 10 * SAMPLE_RATE).astype(np.float32)
    assert get_speech_timestamps(noise) == []


@pytest.mark.parametrize("length", [0, 1, FRAME_SAMPLES, 5 * SAMPLE_RATE])
def test_empty_and_all_zero_audio_have_no_speech(reference_vad, length):
    audio = np.zeros(length, np.float32)
    assert get_speech_timestamps(audio) == []
    assert reference_spans(reference_vad, audio, {}) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(jfk_audio, bad):
    audio = jfk_audio.copy()
    audio[1234] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        get_speech_timestamps(audio)


def test_other_shapes_and_rates_are_refused(jfk_audio):
    with pytest.raises(ValueError, match="1-D"):
        get_speech_timestamps(np.stack([jfk_audio, jfk_audio]))
    with pytest.raises(ValueError, match="16000 Hz"):
        get_speech_timestamps(jfk_audio, sampling_rate=8000)
