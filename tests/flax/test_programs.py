"""Traced programs kept on disk (``whisper_flax.programs``): a later model, or a later process, runs the
exported programs without tracing them, and gets the same tokens as one that traced them."""

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

from tests.helpers import whisper_like_pt_model
from whisper_flax import FlaxWhisperForConditionalGeneration
from whisper_flax.programs import SUFFIX, keep_programs, kept_programs_directory

NEW = 6  # max_new_tokens


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return whisper_like_pt_model().save_pretrained(tmp_path_factory.mktemp("random"))


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(2).standard_normal((2, 80, 60)).astype(np.float32)


@pytest.fixture
def kept(tmp_path):
    """Programs kept in ``tmp_path/programs`` for the test, not kept afterwards."""
    directory = tmp_path / "programs"
    keep_programs(directory)
    try:
        yield directory
    finally:
        keep_programs(None)


def decode(directory, features, **kwargs):
    """A new model from ``directory``: its greedy and sampled tokens (with scores), and how many loops it traced."""
    model = FlaxWhisperForConditionalGeneration.from_pretrained(directory)
    options = dict(max_new_tokens=NEW, return_dict_in_generate=True, output_scores=True, **kwargs)
    greedy = model.generate(features, **options)
    sampled = model.generate(np.repeat(features, 2, axis=0), do_sample=True, temperature=0.7, **options)  # copies
    arrays = [np.asarray(greedy.sequences), *map(np.asarray, greedy.scores), np.asarray(sampled.sequences)]
    return arrays, getattr(model, "_loop_traces", 0)


def programs(directory):
    return sorted(path.name for path in directory.glob(f"*{SUFFIX}"))


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
    expected, _ = decode(checkpoint, features)
    written = programs(kept)
    for name in written:
        path = kept / name
        path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 3])  # truncated
    with caplog.at_level(logging.WARNING, logger="whisper_flax.programs"):
        again, traced = decode(checkpoint, features)
    assert traced == 2 and programs(kept) == written
    assert len([r for r in caplog.records if "unreadable" in r.getMessage()]) == len(written)
    for got, want in zip(again, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert decode(checkpoint, features)[1] == 0  # the rewritten files are whole


def test_another_config_keeps_programs_of_its_own(checkpoint, features, kept, tmp_path):
    decode(checkpoint, features)
    written = set(programs(kept))
    config = json.loads((checkpoint / "config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    for name in os.listdir(checkpoint):
        (other / name).write_bytes((checkpoint / name).read_bytes())
    (other / "config.json").write_text(json.dumps(config | {"layer_norm_eps": 1e-3}))  # not in any shape
    _, traced = decode(other, features)
    assert traced == 2  # nothing of the first config was reused
    assert len(programs(kept)) == 2 * len(written)


def test_a_program_file_of_other_arguments_is_not_run(checkpoint, features, kept, caplog):
    """Files swapped between programs (as a file copied in from elsewhere might be): each is exported again."""
    expected, _ = decode(checkpoint, features)
    paths = [kept / name for name in programs(kept)]
    contents = [path.read_bytes() for path in paths]
    for path, content in zip(paths, contents[1:] + contents[:1], strict=True):
        path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="whisper_flax.programs"):
        again, traced = decode(checkpoint, features)
    assert traced == 2
    assert len([r for r in caplog.records if "written for another program" in r.getMessage()]) == len(paths)
    for got, want in zip(again, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_an_unwritable_directory_keeps_nothing_and_decodes_alike(checkpoint, features, tmp_path, caplog):
    expected, _ = decode(checkpoint, features)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    keep_programs(blocked / "programs")
    try:
        with caplog.at_level(logging.WARNING, logger="whisper_flax.programs"):
            got, traced = decode(checkpoint, features)
    finally:
        keep_programs(None)
    assert traced == 2
    assert len([r for r in caplog.records if "cannot keep JAX programs" in r.getMessage()]) == 1  # said once
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


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
