"""Short-form greedy generate in TensorFlow under XLA: whisper_tf against transformers 4.57.6, same weights and audio.

Ours is ``model.generate`` (one ``tf.function(jit_compile=True)`` loop inside); transformers' is
``tf.function(model.generate, jit_compile=True)``, its documented XLA recipe. Each (implementation,
model) pair runs in its own process. Prints the encoder time (each side's encoder under
``tf.function(jit_compile=True)``), the first generate call (trace + XLA compile), the best of N later
calls at batch 1 and at batch 16 (the sample repeated; a new shape, so compiled again), the per-token
time and the ratios.

    .venv/bin/python benchmarks/bench_tf_generate.py [--models tiny.en base] [--repeats 5] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from timing import best_time

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "jfk.flac"


def worker(implementation: str, model_name: str, repeats: int, batch: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from weights_bridge import fetch
    from whisper_core import WhisperFeatureExtractor, load_audio

    directory = fetch(model_name)
    features = WhisperFeatureExtractor()(load_audio(SAMPLE), sampling_rate=16000, return_tensors="np").input_features
    features = tf.constant(np.asarray(features, np.float32))
    batched = tf.repeat(features, batch, axis=0)
    language = {} if model_name.endswith(".en") else {"language": "en"}
    if implementation == "ours":
        from whisper_tf import TFWhisperForConditionalGeneration

        model = TFWhisperForConditionalGeneration.from_pretrained(directory)
        generate = lambda inputs=features: model.generate(inputs, **language)  # noqa: E731
    else:
        from transformers import GenerationConfig, TFWhisperForConditionalGeneration

        model = TFWhisperForConditionalGeneration.from_pretrained(directory, from_pt=True)
        # from_pt leaves the default generation config, which has no language table for base
        model.generation_config = GenerationConfig.from_pretrained(directory)
        compiled = tf.function(model.generate, jit_compile=True)
        generate = lambda inputs=features: compiled(inputs, **language)  # noqa: E731

    encoder = tf.function(lambda inputs: model.get_encoder()(inputs).last_hidden_state, jit_compile=True)
    encoder_time = best_time(lambda: encoder(features).numpy(), repeats)
    start = time.perf_counter()
    tokens = generate()
    compile_time = time.perf_counter() - start
    generate_time = best_time(lambda: np.asarray(generate()), repeats)
    batch_time = best_time(lambda: np.asarray(generate(batched)), max(1, repeats // 2))  # the warm-up compiles
    row = np.asarray(tokens)[0].tolist()  # transformers pads its XLA output to max_length: count up to <|endoftext|>
    eos = model.generation_config.eos_token_id
    return {
        "encoder_s": encoder_time,
        "compile_s": compile_time,
        "generate_s": generate_time,
        "batch_generate_s": batch_time,
        "tokens": row.index(eos) + 1 if eos in row else len(row),
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
        f"| model | implementation | encoder (ms) | first call (s) | generate (ms) | generate b={args.batch} (ms) | tokens "
        "| per token (ms) | generate speed-up | batch speed-up |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model_name in args.models:
        results = {}
        for implementation in ("ours", "transformers"):
            command = [sys.executable, __file__, "--worker", implementation, model_name, "--repeats", str(args.repeats)]
            command += ["--batch", str(args.batch)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[implementation] = json.loads(output.strip().splitlines()[-1])
        for implementation, result in results.items():
            ratio = results["transformers"]["generate_s"] / result["generate_s"]
            batch_ratio = results["transformers"]["batch_generate_s"] / result["batch_generate_s"]
            print(
                f"| {model_name} | {implementation} | {1000 * result['encoder_s']:.0f} | {result['compile_s']:.1f} | "
                f"{1000 * result['generate_s']:.1f} | "
                f"{1000 * result['batch_generate_s']:.0f} | {result['tokens']} | "
                f"{1000 * result['generate_s'] / result['tokens']:.2f} | {ratio:.2f}x | {batch_ratio:.2f}x |"
            )


if __name__ == "__main__":
    main()
