"""An unknown ``compute_type`` is a ValueError naming the choices at every entry point, before any
checkpoint or framework is touched."""

from __future__ import annotations

import numpy as np
import pytest

import whisper_mb
from whisper_mb.cli import main

CHOICES = "float32, float16, bfloat16, int8, int8_float32"


@pytest.mark.parametrize("backend", sorted(whisper_mb.BACKENDS))
def test_load_backend_refuses_an_unknown_compute_type(backend, tmp_path):
    with pytest.raises(ValueError, match=f"unknown compute_type 'int4': choose one of {CHOICES}"):
        whisper_mb.load_backend(backend, str(tmp_path), "int4")


def test_transcribe_refuses_an_unknown_compute_type(tmp_path):
    with pytest.raises(ValueError, match=f"choose one of {CHOICES}"):
        whisper_mb.transcribe([np.zeros(16000, np.float32)], str(tmp_path), "pt", compute_type="fp8")


def test_cli_refuses_an_unknown_compute_type(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["transcribe", "any.wav", "--compute-type", "int4"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'int4'" in capsys.readouterr().err
