"""load_audio on the real sample, synthesized speech, other containers and broken input."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from whisper_core import load_audio


def test_jfk_is_decoded_downmixed_and_resampled(jfk_path):
    audio = load_audio(jfk_path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 11.0 * 16000) < 160  # the clip is 11 s long
    assert 0.3 < np.abs(audio).max() <= 1.0


def test_bytes_and_file_objects_give_the_same_samples(jfk_path):
    from_path = load_audio(jfk_path)
    assert np.array_equal(load_audio(jfk_path.read_bytes()), from_path)
    with open(jfk_path, "rb") as handle:
        assert np.array_equal(load_audio(handle), from_path)


def test_stereo_is_averaged(tmp_path):
    sox = shutil.which("sox")
    assert sox, "sox is not installed: run `make install`"
    path = tmp_path / "stereo.wav"
    # Left channel a 440 Hz tone, right channel silence: the mono mix is half the tone.
    subprocess.run(
        [sox, "-n", "-r", "16000", "-c", "2", str(path), "synth", "1", "sine", "440", "remix", "1", "0"], check=True
    )
    audio = load_audio(path)
    assert len(audio) == 16000
    assert abs(np.abs(audio).max() - 0.5) < 0.02


def test_resampling_keeps_the_pitch(synthesized_speech, tmp_path):
    sox = shutil.which("sox")
    path = tmp_path / "tone.wav"
    subprocess.run([sox, "-n", "-r", "44100", "-c", "1", str(path), "synth", "2", "sine", "1000"], check=True)
    audio = load_audio(path, sampling_rate=16000)
    assert abs(len(audio) - 32000) <= 16
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 1000) < 2
    assert load_audio(synthesized_speech["en"]).size > 16000


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such audio file"):
        load_audio(tmp_path / "missing.wav")
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(ValueError, match=r"garbage\.mp3"):
        load_audio(garbage)
    with pytest.raises(ValueError, match="bytes"):
        load_audio(b"\x00" * 64)
    with pytest.raises(ValueError, match="sampling_rate"):
        load_audio(garbage, sampling_rate=0)
