"""How ``whisper_tf`` imports TensorFlow: the pooled allocator, optional packages kept out, and nothing taken away."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_tensorflow_comes_without_its_optional_packages_and_they_are_importable_afterwards():
    state = _run(
        "import json, os, sys, whisper_tf\n"
        "optional = ('jax', 'matplotlib', 'scipy')\n"
        "before = {'loaded': [name for name in optional if name in sys.modules],\n"
        "          'bfc': os.environ.get('TF_CPU_ALLOCATOR_USE_BFC')}\n"
        "import jax.numpy as jnp\n"
        "import matplotlib.pyplot\n"
        "import scipy.sparse\n"
        "after = {'sum': float(jnp.ones(3).sum()), 'sparse': scipy.sparse.issparse(scipy.sparse.eye(2)),\n"
        "         'figure': type(matplotlib.pyplot.figure()).__name__, 'keras': 'keras' in sys.modules}\n"
        "print(json.dumps(before | after))"
    )
    assert state == {"loaded": [], "bfc": "true", "sum": 3.0, "sparse": True, "figure": "Figure", "keras": True}


def test_a_package_imported_before_tensorflow_is_left_to_it():
    state = _run(
        "import json, sys\n"
        "import scipy.sparse\n"
        "import whisper_tf\n"
        "legacy = sys.modules['tensorflow.python.keras.engine.training_arrays_v1']\n"
        "print(json.dumps({'issparse': legacy.issparse is scipy.sparse.issparse}))"
    )
    assert state == {"issparse": True}


def test_a_process_that_imported_jax_first_keeps_it_and_its_allocator_choice():
    state = _run(
        "import json, os, sys\n"
        "os.environ['TF_CPU_ALLOCATOR_USE_BFC'] = 'false'\n"
        "import jax\n"
        "import whisper_tf\n"
        "jit = sys.modules['tensorflow.lite.python.util']._jit\n"
        "print(json.dumps({'jit': jit is jax.jit, 'bfc': os.environ['TF_CPU_ALLOCATOR_USE_BFC']}))"
    )
    assert state == {"jit": True, "bfc": "false"}


def test_keras_set_to_run_on_jax_gets_jax_and_our_clear_refusal(tmp_path):
    """Where Keras is configured for JAX, JAX is not hidden: Keras starts on it, and the model module then
    says that this package needs Keras on TensorFlow (not that JAX could not be imported)."""
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    code = (
        "import json, os, sys\n"
        f"os.environ['KERAS_HOME'] = {str(tmp_path)!r}\n"
        "try:\n"
        "    import whisper_tf\n"
        "except Exception as error:\n"
        "    import keras\n"
        "    print(json.dumps({'backend': keras.backend.backend(), 'error': str(error)}))"
    )
    state = _run(code)
    assert state["backend"] == "jax"
    assert "needs Keras on the TensorFlow backend" in state["error"]
