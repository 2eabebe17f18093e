"""Compiled programs kept on disk under ``$WHISPER_MB_HOME``, so a second process starts fast.

TensorFlow and JAX compile the decoding loop (one program per shape: batch, prefix bucket, new
tokens); both can keep what they compiled in a directory and read it back in the next process. This
module points them at ``<WHISPER_MB_HOME>/<framework>-compilations`` before the backend is loaded (and
the traced programs at ``<WHISPER_MB_HOME>/<jax|tf>-programs``). A
cache directory the user set through the framework's own variable stays in charge. (PyTorch compiles
only when asked, ``WHISPER_MB_TORCH_COMPILE=1``, and ``whisper_pt.generation`` then points inductor at
``<WHISPER_MB_HOME>/torch-compilations`` itself.)
"""

from __future__ import annotations

import os
from pathlib import Path

from weights_bridge.fetching import cache_home

# TF_XLA_FLAGS is read when TensorFlow starts: too late once a model of this process has run.
_TF_FLAG = "--tf_xla_persistent_cache_directory"
# JAX keeps on disk only the programs whose compilation took longer than this (see _keep_jax).
MIN_COMPILE_SECONDS = 0.1


def compilation_directory(framework: str) -> Path:
    """``<WHISPER_MB_HOME>/<framework>-compilations``: where ``framework``'s compiled programs are kept."""
    return cache_home() / f"{framework}-compilations"


def keep_compilations(backend: str) -> Path | None:
    """Keep the compilations of ``backend`` ("tf", "flax"; "pt" keeps its own) on disk; returns the
    directory used (``None`` where the user's own setting wins). Call before the framework compiles."""
    keep = {"tf": _keep_tensorflow, "flax": _keep_jax}.get(backend)
    return keep() if keep is not None else None


def _keep_jax() -> Path | None:
    """JAX reads its cache directory from its config. Programs that compile in over 0.1 s are kept: the
    encoder's too (base: 0.49 s to compile, which JAX's default threshold of 1 s, and ours of 0.5 s until
    2026-12-06, left to every process). Quicker ones are not worth a file: a read costs about what they do.
    The traced programs are kept too, in ``<WHISPER_MB_HOME>/jax-programs`` (:mod:`whisper_flax.programs`),
    whoever keeps the compilations."""
    from whisper_flax.programs import keep_programs

    keep_programs(cache_home() / "jax-programs")
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    import jax

    directory = Path(os.environ.get("WHISPER_MB_JAX_CACHE") or compilation_directory("jax"))
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return directory


def _keep_tensorflow() -> Path | None:
    """XLA's persistent cache for ``tf.function(jit_compile=True)``: XLA's compilation is read back from
    disk. The traced programs are kept too, in ``<WHISPER_MB_HOME>/tf-programs``
    (:mod:`whisper_tf.programs`), whoever keeps the compilations; the flag is set first, before this
    imports TensorFlow."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    directory = None
    if _TF_FLAG not in flags:
        directory = compilation_directory("tf")
        os.environ["TF_XLA_FLAGS"] = f"{flags} {_TF_FLAG}={directory}".strip()
    from whisper_tf.programs import keep_programs

    keep_programs(cache_home() / "tf-programs")
    return directory
