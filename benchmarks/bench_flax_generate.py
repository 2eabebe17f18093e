"""Short-form greedy generate in JAX: whisper_flax against transformers 4.57.6 Flax, same weights and audio.

transformers' Flax generate runs as whisper-jax runs it: wrapped in ``jax.jit`` with the params as an
argument. Each (implementation, model) pair runs in its own process. Prints the encoder time at batch 1
(each side's encoder under ``jax.jit``), the compile time (the first call less a warm call), the time of
one call at batch 1 and at batch 16 (best of N after the warm-up), the batch-16 throughput in audio
seconds per second, and the ratios.

    .venv/bin/python benchmarks/bench_flax_generate.py [--models tiny.en base] [--repeats 5] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import best_time

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "jfk.flac"
WINDOW_SECONDS = 30.0  # every row is one 30 s window (the jfk sample padded)


def worker(implementation: str, model_name: str, repeats: int, batch: int) -> dict:
    import jax
    import numpy as np

    from weights_bridge import convert_checkpoint, fetch
    from whisper_core import WhisperFeatureExtractor, load_audio

    directory = fetch(model_name)
    single = WhisperFeatureExtractor()(load_audio(SAMPLE), sampling_rate=16000, return_tensors="np").input_features
    inputs = {1: single.astype(np.float32), batch: np.repeat(single, batch, axis=0).astype(np.float32)}
    language = {} if model_name.endswith(".en") else {"language": "<|en|>"}  # the form transformers' Flax takes
    if implementation == "ours":
        from whisper_flax import FlaxWhisperForConditionalGeneration

        model = FlaxWhisperForConditionalGeneration.from_pretrained(directory, dtype="float32")

        def generate(features):
            return model.generate(features, **language)

        def encode(features):
            return model._encoder_states(features, None)
    else:
        from transformers import FlaxWhisperForConditionalGeneration

        with tempfile.TemporaryDirectory() as scratch:  # their own file format, written by our bridge
            native = convert_checkpoint(directory, Path(scratch) / "flax", to="flax", dtype="float32")
            model = FlaxWhisperForConditionalGeneration.from_pretrained(native, dtype=jax.numpy.float32)
        params = model.params
        compiled = jax.jit(lambda params, features: model.generate(features, params=params, **language).sequences)

        def generate(features):
            return compiled(params, features)

        encoder = jax.jit(lambda params, features: model.encode(features, params=params).last_hidden_state)

        def encode(features):
            return encoder(params, features)

    encoder_s = best_time(lambda: jax.block_until_ready(encode(inputs[1])), repeats)
    figures = {}
    for size, features in inputs.items():
        start = time.perf_counter()
        tokens = jax.block_until_ready(generate(features))
        first = time.perf_counter() - start
        warm = best_time(lambda features=features: jax.block_until_ready(generate(features)), repeats)
        figures[size] = {"compile_s": max(first - warm, 0.0), "generate_s": warm, "tokens": int(tokens.shape[-1])}
    return {
        "encoder_s": encoder_s,
        "compile_s": figures[1]["compile_s"],
        "generate_s": figures[1]["generate_s"],
        "batch_generate_s": figures[batch]["generate_s"],
        "audio_per_s": batch * WINDOW_SECONDS / figures[batch]["generate_s"],
        "tokens": figures[1]["tokens"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--worker", nargs=2, metavar=("IMPLEMENTATION", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats, args.batch)))
        return
    print(
        f"| model | implementation | encoder b=1 (ms) | compile (s) | generate b=1 (ms) | generate b={args.batch} (ms) "
        "| audio s / s (batch) | b=1 speed-up | batch speed-up |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model_name in args.models:
        results = {}
        for implementation in ("ours", "transformers"):
            command = [sys.executable, __file__, "--worker", implementation, model_name]
            command += ["--repeats", str(args.repeats), "--batch", str(args.batch)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[implementation] = json.loads(output.strip().splitlines()[-1])
        reference = results["transformers"]
        for implementation, result in results.items():
            print(
                f"| {model_name} | {implementation} | {1000 * result['encoder_s']:.0f} | {result['compile_s']:.1f} | "
                f"{1000 * result['generate_s']:.0f} | "
                f"{1000 * result['batch_generate_s']:.0f} | {result['audio_per_s']:.1f} | "
                f"{reference['generate_s'] / result['generate_s']:.2f}x | "
                f"{reference['batch_generate_s'] / result['batch_generate_s']:.2f}x |"
            )


if __name__ == "__main__":
    main()
