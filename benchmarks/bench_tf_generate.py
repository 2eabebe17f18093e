"""Short-form greedy generate in TensorFlow under XLA: whisper_tf against transformers 4.57.6, same weights and audio.

Ours is ``model.generate`` (one ``tf.function(jit_compile=True)`` loop inside); transformers' is
``tf.function(model.generate, jit_compile=True)``, its documented XLA recipe. Both load in one
process per model and run alternately (common.py, DESIGN §8) at batch 1 and 16 (jfk repeated; a new
shape, so each side's first call at it compiles again). Prints both medians, the median speed-up with
its range over pairs, each side's first call (trace + XLA compile), each side's encoder under
``tf.function(jit_compile=True)`` and the per-token time at batch 1.

    .venv/bin/python benchmarks/bench_tf_generate.py [--models tiny.en base] [--batches 1 16] [--pairs 5]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import common


def worker(model_name: str, args: argparse.Namespace) -> common.Contest:
    import numpy as np
    import tensorflow as tf
    from transformers import GenerationConfig
    from transformers import TFWhisperForConditionalGeneration as Theirs

    from weights_bridge import fetch
    from whisper_tf import TFWhisperForConditionalGeneration as Ours

    directory = fetch(model_name)
    language = {} if model_name.endswith(".en") else {"language": "en"}
    ours = Ours.from_pretrained(directory)
    theirs = Theirs.from_pretrained(directory, from_pt=True)
    # from_pt leaves the default generation config, which has no language table for base
    theirs.generation_config = GenerationConfig.from_pretrained(directory)
    compiled = tf.function(theirs.generate, jit_compile=True)

    def encoder(model) -> Callable[[object], object]:
        encode = tf.function(lambda inputs: model.get_encoder()(inputs).last_hidden_state, jit_compile=True)
        return lambda features: encode(features).numpy()

    return common.Contest(
        ours=common.Side(encoder(ours), lambda features: np.asarray(ours.generate(features, **language))),
        peer=common.Side(encoder(theirs), lambda features: np.asarray(compiled(features, **language))),
        single=tf.constant(common.jfk_features()),
        repeat=lambda features, batch: tf.repeat(features, batch, axis=0),
        count=common.token_counter(model_name, directory),
    )


if __name__ == "__main__":
    common.main(__doc__, worker)
