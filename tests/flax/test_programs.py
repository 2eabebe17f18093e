"""Traced programs kept on disk (``whisper_flax.programs``): a later model, or a later process, runs the
exported programs without tracing them, and gets the same tokens as one that traced them; with the
executables XLA compiled kept beside them, it neither lowers nor compiles them either."""

from __future__ import annotations

import json
import logging
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
from whisper_flax.programs import EXECUTABLE_SUFFIX, SUFFIX, keep_programs, kept_programs_directory

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


def executables(directory):
    return kept_programs.programs(directory, EXECUTABLE_SUFFIX)


def decode_exported(directory, features, **kwargs):
    """:func:`decode` where no executable is kept, so that the exported programs are what a model reads."""
    kept = kept_programs_directory()
    for name in executables(kept):
        (kept / name).unlink()
    return decode(directory, features, **kwargs)


def compilations_during(work):
    """How many programs XLA compiled (or its persistent cache answered for) while ``work()`` ran, and its
    result."""
    events = []

    def listen(event, duration, **_):
        events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        result = work()
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return events.count("/jax/core/compile/backend_compile_duration"), result


def test_a_later_model_runs_the_kept_programs_untraced_and_decodes_alike(checkpoint, features, kept):
    keep_programs(None)
    expected, traced = decode(checkpoint, features)
    assert traced == 2 and kept_programs_directory() is None and not kept.exists()
    keep_programs(kept)
    first, traced = decode(checkpoint, features)
    written = programs(kept)
    assert traced == 2 and len(written) >= 5  # weights' shapes, encoder, prefix, greedy and sampling loops
    kept_executables = executables(kept)
    assert len(kept_executables) >= 4  # every program XLA compiled: encoder, prefix, greedy and sampling loops
    compiled, (later, traced) = compilations_during(lambda: decode(checkpoint, features))
    assert traced == 0 and compiled == 0  # neither loop was traced again, and nothing was lowered or compiled
    assert programs(kept) == written and executables(kept) == kept_executables  # and nothing new was written
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
    traced = assert_damaged_programs_are_replaced(decode_exported, checkpoint, features, kept, SUFFIX, caplog, LOGGER)
    assert traced == 2


def test_a_damaged_executable_is_compiled_again(checkpoint, features, kept, caplog):
    expected, _ = decode(checkpoint, features)
    written = executables(kept)
    for name in written:
        path = kept / name
        path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 3])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        compiled, (again, traced) = compilations_during(lambda: decode(checkpoint, features))
    assert traced == 0 and compiled == len(written)  # read as exported, compiled again
    assert kept_programs.warnings_with(caplog, "unusable") == len(written) and executables(kept) == written
    kept_programs.assert_same(again, expected)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        compiled, _ = compilations_during(lambda: decode(checkpoint, features))
    assert compiled == 0 and caplog.records == []  # the rewritten files are whole


def test_another_config_keeps_programs_of_its_own(checkpoint, features, kept, tmp_path):
    assert assert_another_config_keeps_its_own(decode, checkpoint, features, kept, SUFFIX, tmp_path) == 2


def test_a_program_file_of_another_program_is_not_run(checkpoint, features, kept, caplog):
    traced = assert_swapped_programs_are_not_run(decode_exported, checkpoint, features, kept, SUFFIX, caplog, LOGGER)
    assert traced == 2


def test_an_executable_file_of_another_program_is_not_run(checkpoint, features, kept, caplog):
    traced = assert_swapped_programs_are_not_run(decode, checkpoint, features, kept, EXECUTABLE_SUFFIX, caplog, LOGGER)
    assert traced == 0  # each swapped file refused, its exported program compiled again


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
    ``WHISPER_MB_HOME``: the second process traces nothing but JAX's own small helpers, compiles none of our
    programs (it loads their executables) and prints the same text. A third process, whose executables are
    gone while XLA's persistent cache still holds the compilations, reads them from the cache and keeps no
    executable (one the cache hands back does not serialize whole)."""
    env = {**os.environ, "WHISPER_MB_HOME": str(tmp_path), "JAX_LOG_COMPILES": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("JAX_COMPILATION_CACHE_DIR", "WHISPER_MB_JAX_CACHE"):
        env.pop(name, None)
    command = [str(Path(sys.executable).parent / "whisper-mb"), "transcribe", str(jfk_path), "--backend", "flax"]
    command += ["--model", str(tiny_en_dir), "--quiet"]
    kept = tmp_path / "jax-programs"

    def run():
        return subprocess.run(command, env=env, capture_output=True, text=True, check=True)

    runs = [run(), run()]
    assert executables(kept)
    for name in executables(kept):
        (kept / name).unlink()
    runs.append(run())
    texts = [json.loads(run.stdout.splitlines()[0])["text"] for run in runs]
    traced = [[line for line in run.stderr.splitlines() if "Finished tracing" in line] for run in runs]
    compiled = [[line for line in run.stderr.splitlines() if "Finished XLA compilation" in line] for run in runs]
    assert texts[0] == texts[1] == texts[2] and texts[0].lower().startswith("and so my fellow americans")
    assert any("_greedy_loop" in line for line in traced[0])
    ours = [line for line in traced[1] if any(name in line for name in ("_loop", "_prefix_pass", "apply", "init"))]
    assert ours == [], ours
    assert not any("jit(call)" in line for line in compiled[1]), compiled[1]  # no exported program compiled
    assert "Persistent compilation cache hit" in runs[2].stderr  # the third read XLA's cache
    assert list(kept.glob(f"*{SUFFIX}")) and executables(kept) == []
