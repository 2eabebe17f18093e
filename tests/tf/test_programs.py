"""Traced programs kept on disk as function libraries (``whisper_tf.programs``): a later model, or a later
process, runs them without tracing, with its own weights, and gets the same tokens as one that traced them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework.function_pb2 import FunctionDefLibrary

from tests import kept_programs
from tests.kept_programs import (  # fixtures checkpoint and features: tests/conftest.py
    assert_another_config_keeps_its_own,
    assert_damaged_programs_are_replaced,
    assert_same,
    assert_swapped_programs_are_not_run,
    assert_unwritable_directory_is_said_once,
    keeping,
)
from whisper_tf import TFWhisperForConditionalGeneration
from whisper_tf.programs import SUFFIX, KeptFunctions, keep_programs, kept_programs_directory

NEW = 6  # max_new_tokens
LOGGER = "whisper_tf.programs"


@pytest.fixture
def kept(tmp_path):
    """Programs kept in ``tmp_path/programs`` for the test, not kept afterwards."""
    yield from keeping(keep_programs, tmp_path)


def traces(model):
    """How many times the model's decoding loops were traced (as kept libraries or not), plus how many times its
    compiled functions traced themselves (encoder, language detection, prefix pass, loops: not when kept)."""
    functions = model._compiled_functions.values()
    return model.__dict__.get("_loop_traces", 0) + sum(f.function.experimental_get_tracing_count() for f in functions)


def decode(directory, features, model=None):
    """A new model from ``directory`` (or ``model``): its greedy tokens with scores and detected languages, its
    sampled tokens (two copies of each input) and its beam-searched tokens; and how many times it traced."""
    model = model or TFWhisperForConditionalGeneration.from_pretrained(directory)
    options = dict(max_new_tokens=NEW, return_dict_in_generate=True, output_scores=True)
    greedy = model.generate(features, **options)
    sampled = model.generate(np.repeat(features, 2, axis=0), do_sample=True, temperature=0.7, language="en", **options)
    searched = model.generate(features, num_beams=2, language="en", max_new_tokens=NEW)
    arrays = [greedy.sequences, *greedy.scores, sampled.sequences, searched]
    return [np.asarray(array) for array in arrays], traces(model)


def programs(directory):
    return kept_programs.programs(directory, SUFFIX)


def test_a_later_model_runs_the_kept_programs_untraced_and_decodes_alike(checkpoint, features, kept):
    keep_programs(None)
    expected, traced = decode(checkpoint, features)
    assert traced >= 6 and kept_programs_directory() is None and not kept.exists()
    keep_programs(kept)
    first, traced_keeping = decode(checkpoint, features)
    written = programs(kept)
    assert 0 < traced_keeping < traced  # the loops, traced as libraries; the model's functions not at all
    assert len(written) >= 6  # encoder, language detection, prefix, greedy, sampling and beam loops
    later, traced = decode(checkpoint, features)
    assert traced == 0 and programs(kept) == written  # nothing traced, nothing new written
    assert_same(first, expected)
    assert_same(later, expected)


def test_a_kept_program_runs_with_the_weights_of_the_model_that_calls_it(checkpoint, features, kept):
    """Weights are the programs' inputs: a model with other values (same shapes) reads the first model's files
    and decodes as that model does untraced."""
    decode(checkpoint, features)
    written = programs(kept)
    other = TFWhisperForConditionalGeneration.from_pretrained(checkpoint)
    for weight in other.weights:
        weight.assign(weight.value * 1.5)
    got, traced = decode(None, features, other)
    assert traced == 0 and programs(kept) == written
    keep_programs(None)
    expected, _ = decode(None, features, other)
    assert_same(got, expected)
    assert not np.array_equal(got[0], decode(checkpoint, features)[0][0])  # the weights changed the tokens


def test_every_kept_function_is_renamed_and_calls_only_functions_of_its_file(checkpoint, features, kept):
    """Names are tagged with the file's hash (so they cannot meet a function the reading process names later),
    and every loop body, branch and call in the library names a function of the library."""
    decode(checkpoint, features)
    for name in programs(kept):
        kept_functions = KeptFunctions.read((kept / name).read_bytes().partition(b"\n")[2])  # after its stamp
        library: FunctionDefLibrary = kept_functions.library
        names = {function.signature.name for function in library.function}
        assert all(function_name.endswith("_" + name[:16]) for function_name in names)
        referenced = set()
        for function in library.function:
            for node in function.node_def:
                for value in node.attr.values():
                    referenced |= {value.func.name} if value.HasField("func") else {f.name for f in value.list.func}
                if node.op.startswith("__") or node.op in names:
                    referenced.add(node.op)
        assert referenced <= names and kept_functions.name in names


def test_a_damaged_program_is_traced_again(checkpoint, features, kept, caplog):
    assert_damaged_programs_are_replaced(decode, checkpoint, features, kept, SUFFIX, caplog, LOGGER)


def test_a_program_file_of_another_program_is_not_run(checkpoint, features, kept, caplog):
    assert_swapped_programs_are_not_run(decode, checkpoint, features, kept, SUFFIX, caplog, LOGGER)


def test_another_config_keeps_programs_of_its_own(checkpoint, features, kept, tmp_path):
    assert_another_config_keeps_its_own(decode, checkpoint, features, kept, SUFFIX, tmp_path)


def test_an_unwritable_directory_keeps_nothing_and_decodes_alike(checkpoint, features, tmp_path, caplog):
    assert_unwritable_directory_is_said_once(
        decode, checkpoint, features, keep_programs, tmp_path, caplog, LOGGER, "TensorFlow program"
    )


def test_a_program_traced_inside_another_function_is_left_to_it(checkpoint, kept):
    """Inside a ``tf.function`` (as a SavedModel export traces the encoder) the model's own function runs: the
    outer graph must hold the functions it calls."""
    model = TFWhisperForConditionalGeneration.from_pretrained(checkpoint)
    outer = tf.function(lambda x: model._encode(x), autograph=False)
    states = outer(tf.zeros((1, 80, 60)))
    assert states.shape[0] == 1 and traces(model) == 1 and programs(kept) == []


@pytest.mark.slow
def test_a_second_process_transcribes_real_speech_alike_without_tracing(tiny_en_dir, jfk_path, tmp_path):
    """Real tiny.en on jfk, transcribed as ``whisper_mb.transcribe`` does in two processes under one
    ``WHISPER_MB_HOME``: the second traces none of the model's programs and gives the same text."""
    code = (
        "import json, sys\n"
        "from whisper_core.audio import load_audio\n"
        "from whisper_core.transcribe import TranscribeOptions, Transcriber\n"
        "from whisper_mb import load_backend\n"
        "from whisper_mb.compile_cache import keep_compilations\n"
        "keep_compilations('tf')\n"
        "backend = load_backend('tf', sys.argv[1])\n"
        "transcriber = Transcriber.from_pretrained(backend, sys.argv[1])\n"
        "(result,) = transcriber.transcribe([load_audio(sys.argv[2])], TranscribeOptions(), progress=False)\n"
        "model = backend.model\n"
        "functions = model._compiled_functions.values()\n"
        "traced = sum(f.function.experimental_get_tracing_count() for f in functions)\n"
        "loops = model.__dict__.get('_loop_traces', 0)\n"
        "print(json.dumps({'text': result.text, 'traced': traced, 'loops': loops, 'programs': len(functions)}))\n"
    )
    env = {**os.environ, "WHISPER_MB_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_XLA_FLAGS", None)
    command = [sys.executable, "-c", code, str(tiny_en_dir), str(jfk_path)]
    runs = [subprocess.run(command, env=env, capture_output=True, text=True, check=True) for _ in range(2)]
    first, second = (json.loads(run.stdout.strip().splitlines()[-1]) for run in runs)
    assert first["text"] == second["text"] and "ask not what your country can do for you" in first["text"]
    assert first["programs"] == second["programs"] >= 3  # encoder, prefix pass, greedy loop
    assert first["loops"] > 0 and first["traced"] == 0  # traced as a library, kept
    assert second["loops"] == second["traced"] == 0  # read back: nothing traced
    assert len(list((tmp_path / "tf-programs").glob(f"*{SUFFIX}"))) == first["programs"]
