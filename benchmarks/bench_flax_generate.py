"""Short-form greedy generate in JAX: whisper_flax against transformers 4.57.6 Flax, same weights and audio.

transformers' Flax generate runs as whisper-jax runs it: wrapped in ``jax.jit`` with the params as an
argument. Both load in one process per model and run alternately (common.py, DESIGN §8) at batch 1
and 16 (jfk repeated). Prints both medians, the median speed-up with its range over pairs, each
side's first call at the shape (its compile), each side's encoder under ``jax.jit`` and the
per-token time at batch 1.

    .venv/bin/python benchmarks/bench_flax_generate.py [--models tiny.en base] [--batches 1 16] [--pairs 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common


def worker(model_name: str, args: argparse.Namespace) -> common.Contest:
    import jax
    import numpy as np
    from transformers import FlaxWhisperForConditionalGeneration as Theirs

    from weights_bridge import convert_checkpoint, fetch
    from whisper_flax import FlaxWhisperForConditionalGeneration as Ours

    directory = fetch(model_name)
    english = not model_name.endswith(".en")
    ours = Ours.from_pretrained(directory, dtype="float32")
    with tempfile.TemporaryDirectory() as scratch:  # their own file format, written by our bridge
        native = convert_checkpoint(directory, Path(scratch) / "flax", to="flax", dtype="float32")
        theirs = Theirs.from_pretrained(native, dtype=jax.numpy.float32)
    params = theirs.params
    language = {"language": "<|en|>"} if english else {}  # the form transformers' Flax takes
    their_generate = jax.jit(lambda params, features: theirs.generate(features, params=params, **language).sequences)
    their_encoder = jax.jit(lambda params, features: theirs.encode(features, params=params).last_hidden_state)
    our_language = {"language": "en"} if english else {}

    return common.Contest(
        ours=common.Side(
            lambda features: jax.block_until_ready(ours._encoder_states(features, None)),
            lambda features: np.asarray(ours.generate(features, **our_language)),
        ),
        peer=common.Side(
            lambda features: jax.block_until_ready(their_encoder(params, features)),
            lambda features: np.asarray(their_generate(params, features)),
        ),
        single=common.jfk_features(),
        repeat=lambda features, batch: np.repeat(features, batch, axis=0),
        count=common.token_counter(model_name, directory),
    )


if __name__ == "__main__":
    common.main(__doc__, worker)
