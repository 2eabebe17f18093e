"""Import TensorFlow and Keras as this package needs them, before anything else of the package runs.

Two things have to happen before TensorFlow's first import: the allocator choice, which TensorFlow reads
when it makes its first tensor, and keeping JAX out: TensorFlow Lite imports it only in case it is installed,
and this project installs it (the Flax backend).
"""

from __future__ import annotations

import os
import sys


def import_tensorflow() -> None:
    """Import TensorFlow and Keras with the pooled allocator and without JAX.

    - The pooled (BFC) CPU allocator: TensorFlow's default maps every large tensor afresh and faults its
      pages in on each use: a base encoder's [8, 1500, 1500] attention scores cost 28 ms to add 1 to, 5.5 ms
      from the pooled allocator, and the whole encoder runs ~20% faster. A value already set is kept.
    - TensorFlow Lite imports ``jax.jit`` under ``try``, for converting JAX functions, which this package
      never does: with JAX installed that cost every TensorFlow process 0.43 s (2026-12-06,
      ``python -X importtime -c "import whisper_tf"``). JAX is hidden while TensorFlow imports and importable
      again afterwards (TensorFlow Lite's JAX conversion then says it cannot import JAX).

    A process that has imported TensorFlow already keeps what it has.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    hide_jax = "jax" not in sys.modules
    if hide_jax:
        sys.modules["jax"] = None  # makes ``import jax`` raise ImportError
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        if hide_jax:
            del sys.modules["jax"]
