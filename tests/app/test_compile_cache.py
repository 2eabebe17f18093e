"""Compilations kept under $WHISPER_MB_HOME: a second process finds what the first compiled and adds
nothing (each test runs two real processes of the framework)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from functools import partial

import pytest

from whisper_mb import BACKENDS

# A small compiled program per framework; each process prints its result.
PROGRAMS = {
    "tf": """
import tensorflow as tf
f = tf.function(lambda x: tf.tanh(x @ tf.transpose(x)) @ x, jit_compile=True)
print(float(tf.reduce_sum(f(tf.ones((8, 8))))))
""",
    "flax": """
import jax, jax.numpy as jnp
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # keep even this tiny program
f = jax.jit(lambda x: jnp.tanh(x @ x.T) @ x)
print(float(f(jnp.ones((8, 8))).sum()))
""",
}
PRELUDE = "from whisper_mb.compile_cache import keep_compilations; print(keep_compilations({backend!r}))\n"


def run_twice(backend: str, home: str) -> tuple[list[str], list[str], list[str]]:
    """Run the backend's program in two processes; return the two outputs and the cache's files."""
    env = {**os.environ, "WHISPER_MB_HOME": home, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("TF_XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR", "WHISPER_MB_JAX_CACHE"):
        env.pop(name, None)
    code = PRELUDE.format(backend=backend) + PROGRAMS[backend]
    outputs, listings = [], []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.append(done.stdout.split())
        directory = outputs[-1][0]
        listings.append(sorted(os.listdir(directory)))
    return outputs[0], outputs[1], listings


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(name, marks=pytest.mark.skipif(not BACKENDS[name].is_installed(), reason="not installed"))
        for name in PROGRAMS
    ],
)
def test_second_process_reuses_the_first_ones_compilation(backend, tmp_path):
    first, second, (written, after) = run_twice(backend, str(tmp_path))
    assert first[0] == str(tmp_path / f"{'jax' if backend == 'flax' else backend}-compilations")
    assert written, "the first process kept nothing"
    assert after == written  # the second process compiled nothing new
    assert first == second


@pytest.mark.skipif(not BACKENDS["tf"].is_installed(), reason="TensorFlow not installed")
def test_a_cache_the_user_set_stays_in_charge(tmp_path, monkeypatch, request):
    from whisper_mb.compile_cache import keep_compilations
    from whisper_tf.programs import keep_programs, kept_programs_directory

    request.addfinalizer(partial(keep_programs, kept_programs_directory()))  # keep_compilations("tf") sets it
    monkeypatch.setenv("TF_XLA_FLAGS", f"--tf_xla_persistent_cache_directory={tmp_path}")
    assert keep_compilations("tf") is None
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_persistent_cache_directory={tmp_path}"
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_enable_lazy_compilation=false")
    monkeypatch.setenv("WHISPER_MB_HOME", str(tmp_path))
    assert keep_compilations("tf") == tmp_path / "tf-compilations"
    assert os.environ["TF_XLA_FLAGS"].split() == [
        "--tf_xla_enable_lazy_compilation=false",
        f"--tf_xla_persistent_cache_directory={tmp_path / 'tf-compilations'}",
    ]  # the user's other flags stay
    assert kept_programs_directory() == tmp_path / "tf-programs"  # the traced programs, whoever keeps compilations


@pytest.mark.slow
@pytest.mark.skipif(not BACKENDS["flax"].is_installed(), reason="JAX not installed")
def test_transcribing_speech_of_another_length_compiles_nothing_in_jax(tiny_en_dir, jfk_audio, caplog):
    """Real tiny.en on real speech: once jfk is transcribed, transcribing its first six seconds (another number
    of decoded tokens, another sampled length) compiles no program at all. Inputs moved with ``jnp.asarray``,
    rows gathered with a NumPy index or outputs cut on the device each compiled small programs in every
    process, the cut once per decoded length."""
    import jax

    from whisper_core.transcribe import TranscribeOptions, Transcriber
    from whisper_mb import load_backend

    transcriber = Transcriber.from_pretrained(load_backend("flax", str(tiny_en_dir)), tiny_en_dir)
    options = TranscribeOptions(temperature=(0.0,))
    whole = transcriber.transcribe([jfk_audio], options, progress=False)[0]
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles():
        start = transcriber.transcribe([jfk_audio[: 6 * 16000]], options, progress=False)[0]
    assert len(start.text.split()) < len(whole.text.split())  # another decoded length
    assert whole.text.lower().startswith(" and so my fellow americans")
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling")] == []
