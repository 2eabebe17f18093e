"""Import TensorFlow and Keras as this package needs them, before anything else of the package runs.

Two things have to happen before TensorFlow's first import: the allocator choice, which TensorFlow reads
when it makes its first tensor, and keeping out the optional packages that TensorFlow and Keras import only
in case they are installed, for features this package never uses (this project installs all of them).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# What TensorFlow and Keras import only in case it is installed, for features this package never uses.
_OPTIONAL_PACKAGES = ("jax", "matplotlib", "scipy")


def import_tensorflow() -> None:
    """Import TensorFlow and Keras with the pooled allocator and without the optional packages they do not
    need here.

    - The pooled (BFC) CPU allocator: TensorFlow's default maps every large tensor afresh and faults its
      pages in on each use: a base encoder's [8, 1500, 1500] attention scores cost 28 ms to add 1 to, 5.5 ms
      from the pooled allocator, and the whole encoder runs ~20% faster. TensorFlow reads the setting when it
      makes its first tensor, so it is made even where TensorFlow is imported already; a value already set
      is kept.
    - Packages imported under ``try`` for features of TensorFlow and Keras that this package never uses, each
      hidden while TensorFlow and Keras import (``import`` of them raises ``ImportError``) and importable
      again afterwards, unless something imported it already (2026-12-07, ``python -X importtime -c
      "import whisper_tf"``), and not where Keras is set to run on another backend: JAX, which TensorFlow
      Lite imports for converting JAX functions (0.43 s); matplotlib, which Keras imports for
      ``keras.visualization``'s image galleries (0.49 s: they then say that matplotlib is not installed);
      SciPy, which TensorFlow's legacy internal Keras (``tensorflow.python.keras``, not Keras 3) imports for
      sparse inputs (0.19 s). pandas (0.22 s) is not hidden: Keras 3's ``fit`` reads DataFrames with it.
    """
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    if "tensorflow" in sys.modules:
        return
    hidden = [name for name in _OPTIONAL_PACKAGES if name not in sys.modules]
    if _keras_backend() != "tensorflow":
        hidden = []  # Keras starts on another backend, which may need any of them; whisper_tf then refuses
    for name in hidden:
        sys.modules[name] = None  # makes ``import name`` raise ImportError
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


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
