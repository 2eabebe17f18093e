"""Shared fixtures: the real sample, synthesized speech, and the real tokenizer files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from weights_bridge import data_packages
from whisper_core import load_audio

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
JFK_FLAC = SHARED_DATA / "jfk.flac"
JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
pytest_plugins = ("tests.kept_programs",)  # the random checkpoint and features the kept-program tests share


@pytest.fixture(scope="session")
def jfk_path() -> Path:
    assert JFK_FLAC.is_file(), f"the real sample is missing: {JFK_FLAC}"
    return JFK_FLAC


@pytest.fixture(scope="session")
def jfk_audio(jfk_path: Path) -> np.ndarray:
    return load_audio(jfk_path)


def synthesize(text: str, voice: str, directory: Path, name: str) -> Path:
    """Speak ``text`` with espeak-ng into a WAV file (installed by ``make install``)."""
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is not installed: run `make install`"
    path = directory / f"{name}.wav"
    subprocess.run([espeak, "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def synthesized_speech(speech_dir: Path) -> dict[str, Path]:
    """A few utterances in several languages (espeak-ng writes 22.05 kHz mono WAV)."""
    sentences = {
        "en": ("en", "The quick brown fox jumps over the lazy dog, twenty five times."),
        "fr": ("fr", "Bonjour tout le monde, il fait beau aujourd'hui."),
        "de": ("de", "Guten Morgen, wie geht es dir heute?"),
        "es": ("es", "El perro corre por el parque con su pelota."),
    }
    return {key: synthesize(text, voice, speech_dir, key) for key, (voice, text) in sentences.items()}


@pytest.fixture(scope="session")
def tiny_en_tokenizer_dir() -> Path:
    return data_packages.metadata_dir("tiny.en")


@pytest.fixture(scope="session")
def base_tokenizer_dir() -> Path:
    return data_packages.metadata_dir("base")


@pytest.fixture(scope="session")
def openai_assets() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("whisper")
    assert spec is not None and spec.submodule_search_locations, "openai-whisper is not installed: run `make install`"
    return Path(next(iter(spec.submodule_search_locations))) / "assets"


@pytest.fixture(scope="session")
def tiny_en_dir() -> Path:
    """The real tiny.en as a canonical checkpoint, built once into $WHISPER_MB_HOME (see DESIGN.md §2)."""
    from weights_bridge import fetch

    return fetch("tiny.en")


@pytest.fixture(scope="session")
def base_dir() -> Path:
    from weights_bridge import fetch

    return fetch("base")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Under ``make test`` (WHISPER_MB_NO_SKIPS=1) a skip is a failure: everything the suite needs is
    installed there, so a skipped backend pair or a missing reference would hide a gap, not excuse it."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("WHISPER_MB_NO_SKIPS") == "1" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under make test, where nothing may be: {report.longrepr}"


def argmax_edge_rows() -> np.ndarray:
    """Logit rows for checking a greedy pick against np.argmax: ties (small integers), a -inf row,
    infinities, NaNs beside infinities and an all-NaN row (np.argmax: the first maximum, a NaN first)."""
    rng = np.random.default_rng(0)
    rows = rng.integers(-3, 4, size=(40, 57)).astype(np.float32)
    rows[1] = -np.inf
    rows[2, [7, 30]] = np.inf
    rows[3, [5, 40]] = np.nan
    rows[4, [9]] = np.nan
    rows[4, [2]] = np.inf
    rows[5] = np.nan
    return rows


@pytest.fixture(scope="session")
def mixed_audio(tmp_path_factory: pytest.TempPathFactory, jfk_path: Path) -> Any:
    """About three minutes of jfk and espeak-ng speech between noise, tones and silence, built once per
    session (a ``tests.core.mixed_audio.MixedAudio``)."""
    from tests.core.mixed_audio import build_mixed_audio  # here, not at the top: that module imports this one

    return build_mixed_audio(tmp_path_factory.mktemp("mixed_audio"), jfk_path)


@pytest.fixture(scope="session")
def transcribers(tiny_en_dir: Path) -> Any:
    """The real tiny.en as a ``Transcriber`` per backend, loaded the first time each is asked for."""
    from whisper_core.transcribe import Transcriber
    from whisper_mb import load_backend

    class Lazy(dict):
        def __missing__(self, name: str) -> Transcriber:
            self[name] = Transcriber.from_pretrained(load_backend(name, str(tiny_en_dir)), str(tiny_en_dir))
            return self[name]

    return Lazy()
