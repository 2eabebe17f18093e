"""The ``whisper-mb`` console command on the real sample and tokenizers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import JFK_TEXT


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).parent / "whisper-mb"
    assert executable.is_file(), "the whisper-mb console script is not installed: run `make install`"
    return subprocess.run([str(executable), *args], capture_output=True, text=True, env=env)


def test_features_of_the_sample(jfk_path):
    result = run("features", str(jfk_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["features_shape"] == [1, 80, 3000] and abs(summary["seconds"] - 11.0) < 0.01


def test_tokenize_round_trip():
    result = run("tokenize", JFK_TEXT, "--model", "tiny.en")
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["decoded"] == JFK_TEXT and output["ids"][0] == 50257


def test_the_script_exits_with_the_code_after_atexit_handlers_and_every_line():
    """``console`` skips the interpreter's teardown, not what a normal exit owes: the command's output (piped,
    so block-buffered), the handlers registered with ``atexit`` and the command's exit code."""
    script = (
        "import atexit, sys; from whisper_mb.cli import console; atexit.register(print, 'handler ran'); "
        "sys.argv = ['whisper-mb', *sys.argv[1:]]; console()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "tokenize", "hi", "--model", "tiny.en"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert json.loads(lines[0])["decoded"] == "hi" and lines[1:] == ["handler ran"]
    result = subprocess.run([sys.executable, "-c", script, "features", "missing.flac"], capture_output=True, text=True)
    assert result.returncode == 2 and "no such audio file" in result.stderr and result.stdout == "handler ran\n"


def test_errors_are_reported_not_raised(tmp_path):
    result = run("features", str(tmp_path / "missing.flac"))
    assert result.returncode == 2 and "no such audio file" in result.stderr
    result = run("tokenize", "hi", "--model", "base", "--language", "klingon")
    assert result.returncode == 2 and "unknown language" in result.stderr


@pytest.mark.slow
def test_fetch_and_transcribe_with_pytorch(jfk_path, tmp_path):
    result = run("fetch", "tiny.en")
    assert result.returncode == 0, result.stderr
    assert (Path(result.stdout.strip()) / "model.safetensors").is_file()
    result = run("transcribe", str(jfk_path), str(tmp_path / "missing.flac"), "--backend", "pt", "--model", "tiny.en")
    assert result.returncode == 1, "one unreadable file fails the run but not the others"
    assert "missing.flac" in result.stderr
    text = json.loads(result.stdout.strip().splitlines()[0])["text"]
    assert "ask not what your country can do for you" in text


@pytest.mark.slow
def test_a_file_that_fails_in_a_batch_does_not_fail_the_others(jfk_path, tmp_path, monkeypatch, capsys):
    """With --batch-size 2, a file whose decoding fails is found by running the batch file by file."""
    import numpy as np

    from whisper_core import load_audio
    from whisper_core.transcribe import Transcriber
    from whisper_mb.cli import main

    poison = tmp_path / "poison.wav"
    shutil.copy(jfk_path, tmp_path / "jfk.flac")
    subprocess.run(["sox", str(jfk_path), "-r", "16000", "-c", "1", str(poison), "trim", "0", "3"], check=True)
    poisoned = len(load_audio(poison))
    original = Transcriber.transcribe

    def transcribe(self, audios, *args, **kwargs):  # decoding of the poison file fails, wherever it sits
        if any(len(np.asarray(audio)) == poisoned for audio in audios):
            raise ValueError("cannot decode this one")
        return original(self, audios, *args, **kwargs)

    monkeypatch.setattr(Transcriber, "transcribe", transcribe)
    code = main(
        ["transcribe", str(poison), str(tmp_path / "jfk.flac"), "--model", "tiny.en", "--batch-size", "2", "--quiet"]
    )
    captured = capsys.readouterr()
    assert code == 1 and "poison.wav: cannot decode this one" in captured.err
    assert "jfk.flac" not in captured.err
    assert "ask not what your country can do for you" in json.loads(captured.out.strip().splitlines()[-1])["text"]


@pytest.mark.slow
def test_flax_transcription_keeps_its_compiled_programs(tiny_en_dir, jfk_path, tmp_path):
    """The JAX backend's compilations go to $WHISPER_MB_JAX_CACHE, so the next process reuses them. The
    process runs under a fresh $WHISPER_MB_HOME: where an earlier process kept the programs' executables,
    this one would load them and compile nothing."""
    cache = tmp_path / "jax"
    env = {key: value for key, value in os.environ.items() if key != "JAX_COMPILATION_CACHE_DIR"}
    env |= {"WHISPER_MB_JAX_CACHE": str(cache), "WHISPER_MB_HOME": str(tmp_path / "home")}
    result = run("transcribe", str(jfk_path), "--backend", "flax", "--model", str(tiny_en_dir), env=env)
    assert result.returncode == 0, result.stderr
    assert "ask not what your country can do for you" in json.loads(result.stdout.strip().splitlines()[0])["text"]
    assert cache.is_dir() and any(cache.iterdir()), "no compiled program was kept"
