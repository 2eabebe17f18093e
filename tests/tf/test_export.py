"""The exported SavedModel, loaded by plain TensorFlow in a fresh process, gives generate's ids."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import WHISPER_LIKE, WHISPER_LIKE_GENERATION
from whisper_core import GenerationConfig, WhisperConfig
from whisper_tf import TFWhisperForConditionalGeneration
from whisper_tf.export import export_saved_model

LOAD_AND_RUN = """
import sys
import numpy as np
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
features = np.load(sys.argv[2])
np.save(sys.argv[3], serve(input_features=tf.constant(features))["sequences"].numpy())
"""


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(0)
    model = TFWhisperForConditionalGeneration(WhisperConfig(**WHISPER_LIKE))
    for variable in model.trainable_weights:  # scaled so the ids depend on the audio
        if len(variable.shape) >= 2:
            variable.assign(np.random.default_rng(0).normal(0, 2.0 / variable.shape[0] ** 0.5, variable.shape))
    model.generation_config = GenerationConfig(**WHISPER_LIKE_GENERATION)
    return model


def test_saved_model_serves_generate_ids_in_a_fresh_process(model, tmp_path):
    features = np.random.default_rng(1).standard_normal((3, 80, 60)).astype(np.float32)
    kwargs = dict(language="de", task="translate", max_new_tokens=8)
    path = export_saved_model(model, tmp_path / "saved", **kwargs)
    np.save(tmp_path / "features.npy", features)
    script = [sys.executable, "-c", LOAD_AND_RUN, str(path), str(tmp_path / "features.npy"), str(tmp_path / "ids.npy")]
    subprocess.run(script, check=True, capture_output=True)
    expected = model.generate(features, **kwargs).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "ids.npy"), expected)
    assert expected.shape[1] > 4  # the prefix and some generated tokens


def test_export_needs_a_language_and_a_fresh_directory(model, tmp_path):
    with pytest.raises(ValueError, match="language="):
        export_saved_model(model, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "file").write_text("x")
    with pytest.raises(FileExistsError):
        export_saved_model(model, tmp_path / "b", language="en")
