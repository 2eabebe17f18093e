"""Traced programs kept on disk (``whisper_flax.programs``): a later model, or a later process, runs the
exported programs without tracing them, and gets the same tokens as one that traced them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from tests import kept_programs
from tests.kept_programs import (  # fixtures checkpoint and features: tests/conftest.py
    assert_another_config_keeps_its_own,
    assert_damaged_programs_are_replaced,
    assert_swapped_programs_are_not_run,
    assert_unwritable_directory_is_said_once,
    keeping,
)
from whisper_flax import FlaxWhisperForConditionalGeneration
from whisper_flax.programs import SUFFIX, keep_programs, kept_programs_directory

NEW = 6  # max_new_tokens
LOGGER = "whisper_flax.programs"


@pytest.fixture
def kept(tmp_path):
    """Programs kept in ``tmp_path/programs`` for the test, not kept afterwards."""
    yield from keeping(keep_programs, tmp_path)


def decode(directory, features, **kwargs):
    """A new model from ``directory``: its greedy and sampled tokens (with scores), and how many loops it traced."""
    model = FlaxWhisperForConditionalGeneration.from_pretrained(directory)
    options = dict(max_new_tokens=NEW, return_dict_in_generate=True, output_scores=True, **kwargs)
    greedy = model.generate(features, **options)
    sampled = model.generate(np.repeat(features, 2, axis=0), do_sample=True, temperature=0.7, **options)  # copies
    arrays = [np.asarray(greedy.sequences), *map(np.asarray, greedy.scores), np.asarray(sampled.sequences)]
    return arrays, getattr(model, "_loop_traces", 0)


def programs(directory):
    return kept_programs.programs(directory, SUFFIX)


def test_a_later_model_runs_the_kept_programs_untraced_and_decodes_alike(checkpoint, features, kept):
    keep_programs(None)
    expected, traced = decode(checkpoint, features)
    assert traced == 2 and kept_programs_directory() is None and not kept.exists()
    keep_programs(kept)
    first, traced = decode(checkpoint, features)
    written = programs(kept)
    assert traced == 2 and len(written) >= 5  # weights' shapes, encoder, prefix, greedy and sampling loops
    later, traced = decode(checkpoint, features)
    assert traced == 0  # neither loop was traced again
    assert programs(kept) == written  # and nothing new was written
    for arrays in (first, later):
        for got, want in zip(arrays, expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_loading_takes_the_weights_shapes_from_the_kept_program(checkpoint, kept, monkeypatch):
    FlaxWhisperForConditionalGeneration.from_pretrained(checkpoint)  # exports the shapes' program
    monkeypatch.setattr(FlaxWhisperForConditionalGeneration, "init_weights", lambda *a, **k: pytest.fail("traced"))
    model = FlaxWhisperForConditionalGeneration.from_pretrained(checkpoint)
    assert model.params["model"]["decoder"]["embed_tokens"]["embedding"].shape == (100, 64)
    keep_programs(None)
    with pytest.raises(pytest.fail.Exception, match="traced"):  # without kept programs it traces the model
        FlaxWhisperForConditionalGeneration.from_pretrained(checkpoint)


def test_a_damaged_program_is_exported_again(checkpoint, features, kept, caplog):
    assert assert_damaged_programs_are_replaced(decode, checkpoint, features, kept, SUFFIX, caplog, LOGGER) == 2


def test_another_config_keeps_programs_of_its_own(checkpoint, features, kept, tmp_path):
    assert assert_another_config_keeps_its_own(decode, checkpoint, features, kept, SUFFIX, tmp_path) == 2


def test_a_program_file_of_another_program_is_not_run(checkpoint, features, kept, caplog):
    assert assert_swapped_programs_are_not_run(decode, checkpoint, features, kept, SUFFIX, caplog, LOGGER) == 2


def test_an_unwritable_directory_keeps_nothing_and_decodes_alike(checkpoint, features, tmp_path, caplog):
    traced = assert_unwritable_directory_is_said_once(
        decode, checkpoint, features, keep_programs, tmp_path, caplog, LOGGER, "JAX program"
    )
    assert traced == 2


def test_a_setting_that_changes_the_arithmetic_keeps_programs_of_its_own(checkpoint, features, kept):
    decode(checkpoint, features)
    written = len(programs(kept))
    with jax.default_matmul_precision("bfloat16"):
        _, traced = decode(checkpoint, features)
    assert traced == 2 and len(programs(kept)) == 2 * written


@pytest.mark.slow
def test_a_second_process_transcribes_real_speech_alike_without_tracing(tiny_en_dir, jfk_path, tmp_path):
    """Real tiny.en on jfk through ``whisper-mb transcribe --backend flax`` twice under one
    ``WHISPER_MB_HOME``: the second process traces nothing but JAX's own small helpers and prints the same
    text."""
    env = {**os.environ, "WHISPER_MB_HOME": str(tmp_path), "JAX_LOG_COMPILES": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("JAX_COMPILATION_CACHE_DIR", "WHISPER_MB_JAX_CACHE"):
        env.pop(name, None)
    command = [str(Path(sys.executable).parent / "whisper-mb"), "transcribe", str(jfk_path), "--backend", "flax"]
    command += ["--model", str(tiny_en_dir), "--quiet"]
    runs = [subprocess.run(command, env=env, capture_output=True, text=True, check=True) for _ in range(2)]
    texts = [json.loads(run.stdout.splitlines()[0])["text"] for run in runs]
    traced = [[line for line in run.stderr.splitlines() if "Finished tracing" in line] for run in runs]
    assert texts[0] == texts[1] and texts[0].lower().startswith("and so my fellow americans")
    assert any("_greedy_loop" in line for line in traced[0])
    ours = [line for line in traced[1] if any(name in line for name in ("_loop", "_prefix_pass", "apply", "init"))]
    assert ours == [], ours
    assert list((tmp_path / "jax-programs").glob(f"*{SUFFIX}"))
