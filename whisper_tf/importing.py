"""Import TensorFlow and Keras as this package needs them, before anything else of the package runs.

Two things have to happen before TensorFlow's first import: the allocator choice, which TensorFlow reads
when it makes its first tensor, and keeping JAX out: TensorFlow Lite imports it only in case it is installed,
and this project installs it (the Flax backend).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def import_tensorflow() -> None:
    """Import TensorFlow and Keras with the pooled allocator and without JAX.

    - The pooled (BFC) CPU allocator: TensorFlow's default maps every large tensor afresh and faults its
      pages in on each use: a base encoder's [8, 1500, 1500] attention scores cost 28 ms to add 1 to, 5.5 ms
      from the pooled allocator, and the whole encoder runs ~20% faster. TensorFlow reads the setting when it
      makes its first tensor, so it is made even where TensorFlow is imported already; a value already set
      is kept.
    - TensorFlow Lite imports ``jax.jit`` under ``try``, for converting JAX functions, which this package
      never does: with JAX installed that cost every TensorFlow process 0.43 s (2026-12-06,
      ``python -X importtime -c "import whisper_tf"``). JAX is hidden while TensorFlow and Keras import and
      importable again afterwards (TensorFlow Lite's JAX conversion then says it cannot import JAX). Not
      where JAX is imported already, nor where Keras is set to run on JAX (it would fail to start).
    """
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    if "tensorflow" in sys.modules:
        return
    hide_jax = "jax" not in sys.modules and _keras_backend() == "tensorflow"
    if hide_jax:
        sys.modules["jax"] = None  # makes ``import jax`` raise ImportError
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        if hide_jax and sys.modules.get("jax", 0) is None:
            del sys.modules["jax"]


def _keras_backend() -> str:
    """The backend Keras will start with, found as Keras finds it: ``$KERAS_BACKEND``, else the ``backend``
    of ``keras.json`` in ``$KERAS_HOME`` (default ``~/.keras``), else TensorFlow."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        return str(json.loads((home / "keras.json").read_text()).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"
