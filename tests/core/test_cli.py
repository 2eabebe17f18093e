"""The ``whisper-mb`` console command on the real sample and tokenizers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import JFK_TEXT


def run(*args: str) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).parent / "whisper-mb"
    assert executable.is_file(), "the whisper-mb console script is not installed: run `make install`"
    return subprocess.run([str(executable), *args], capture_output=True, text=True)


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
