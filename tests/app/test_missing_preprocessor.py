"""A checkpoint saved as ``model.save_pretrained(d)`` plus ``tokenizer.save_pretrained(d)`` has no
preprocessor_config.json: ``whisper-mb transcribe`` and ``whisper-mb parity`` use the defaults for its
config's mel bins and say so once, instead of refusing it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app.test_cli import run

pytestmark = pytest.mark.slow

NOTICE = "has no preprocessor_config.json: using the WhisperFeatureExtractor defaults for 80 mel bins"


@pytest.fixture(scope="module")
def saved_without_preprocessor(tiny_en_dir, tmp_path_factory) -> Path:
    from whisper_core import WhisperTokenizer
    from whisper_pt import WhisperForConditionalGeneration

    directory = tmp_path_factory.mktemp("saved") / "tiny.en"
    WhisperForConditionalGeneration.from_pretrained(tiny_en_dir).save_pretrained(directory)
    WhisperTokenizer.from_pretrained(tiny_en_dir).save_pretrained(directory)
    assert (directory / "model.safetensors").is_file() and (directory / "tokenizer.json").is_file()
    assert not (directory / "preprocessor_config.json").exists()
    return directory


def transcript(result) -> str:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[0])["text"]


def test_transcribe_uses_the_default_extractor_and_says_so_once(saved_without_preprocessor, tiny_en_dir, jfk_path):
    args = ("transcribe", str(jfk_path), "--backend", "pt", "--quiet", "--model")
    result = run(*args, str(saved_without_preprocessor))
    text = transcript(result)
    assert "ask not what your country can do for you" in text
    assert text == transcript(run(*args, str(tiny_en_dir))), "the defaults are the checkpoint's own extractor"
    assert result.stderr.count(NOTICE) == 1 and str(saved_without_preprocessor) in result.stderr, result.stderr


def test_parity_uses_the_default_extractor_and_says_so_once(saved_without_preprocessor, jfk_path):
    directory = str(saved_without_preprocessor)
    result = run("parity", directory, "--backends", "pt,flax", "--audio", str(jfk_path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["passed"]
    assert result.stderr.count(NOTICE) == 1 and directory in result.stderr, result.stderr
