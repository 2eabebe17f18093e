"""A TensorFlow SavedModel that transcribes: log-mel features in, token ids out, no Python needed to serve.

The serving signature runs the XLA-compiled encoder and greedy loop of ``generation.py`` with the
decoder prefix fixed at export time (language and task are forced: the graph does not detect them),
so TF Serving, TFLite converters or any TF runtime can load it with ``tf.saved_model.load``:

    ids = tf.saved_model.load(path).signatures["serving_default"](input_features=features)["sequences"]

``sequences`` are ``[batch, prefix + generated]`` int32 ids, padded with ``<|endoftext|>`` as
``generate`` returns them; the batch size is free.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import tensorflow as tf

from whisper_core.decoding import plan_generation

from .generation import xla_function

SIGNATURE = "serving_default"


def export_saved_model(
    model: Any,
    directory: str | os.PathLike,
    *,
    language: str | None = None,
    task: str | None = None,
    return_timestamps: bool = False,
    max_new_tokens: int | None = None,
) -> Path:
    """Write ``model`` (a ``TFWhisperForConditionalGeneration``) as a SavedModel whose ``serving_default``
    signature maps ``input_features [batch, num_mel_bins, frames]`` float32 to ``sequences`` (greedy ids).

    ``language`` is required for multilingual models (the exported graph does not detect it). The
    directory must not exist or be empty; it is written beside and renamed into place, so a failed
    export leaves nothing behind.
    """
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty: export into a new directory")

    def no_detection() -> Any:
        raise ValueError("an exported model decodes one forced language: give language= (e.g. 'en')")

    plan = plan_generation(
        model.generation_config,
        model.config,
        1,
        no_detection,
        language=language,
        task=task,
        return_timestamps=return_timestamps,
        max_new_tokens=max_new_tokens,
    )
    spec = plan.loop_spec()
    loop = model._compiled(spec, lambda: xla_function(partial(model._greedy_loop, spec)))
    prefix_pass = model._prefix_program(plan.capacity, spec.no_speech_token)
    prefix_row = tf.constant(plan.prefixes[0], tf.int32)  # [begin]
    frames = 2 * model.config.max_source_positions

    @tf.function(input_signature=[tf.TensorSpec((None, model.config.num_mel_bins, frames), tf.float32)])
    def serve(input_features: tf.Tensor) -> dict[str, tf.Tensor]:
        encoder_states = model._encoder_states(input_features, None)
        batch = tf.shape(input_features)[0]
        no_padding = tf.zeros([batch], tf.int32)
        prefix = tf.tile(prefix_row[None, :], [batch, 1])
        last, no_speech, cache = prefix_pass(encoder_states, prefix, no_padding, no_padding + plan.sot_positions[0])
        tokens, length, *_ = loop(
            prefix,
            no_padding,
            no_padding,  # no earliest end
            last,
            no_speech,
            cache,
            tf.zeros(tf.stack([spec.max_new_tokens, batch])),  # sampling draws, which argmax does not read
            tf.constant(1.0, tf.float32),  # the temperature, which argmax does not read either
            tf.constant(plan.max_new_tokens, tf.int32),
        )
        return {"sequences": tokens[:, :length]}

    module = tf.Module()
    module.weights = list(model.weights)  # the variables the signature reads (not the Keras model: no call trace)
    module.serve = serve
    directory.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tf.saved_model.save(module, str(temporary), signatures={SIGNATURE: serve})
        os.replace(temporary, directory)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return directory
