"""How close whisper_flax's batch-1 generate is to what the machine allows: measured time against floors.

At batch 1 the encoder is matrix products and the decode step reads every decoder weight, the tied
output projection and the cached cross-attention keys and values once per token. So the floors are
the encoder's multiply-adds at the machine's own matrix-product rate (measured on the encoder's MLP
shape), and a step's bytes at the rate the output projection streams them (measured alone). The
ratio measured / floor says how much any implementation could still gain on this machine; compare
with ``bench_flax_generate.py``, where transformers' Flax runs the same work.

    .venv/bin/python benchmarks/bench_flax_floors.py [--models tiny.en base] [--repeats 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from timing import best_time

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "jfk.flac"
FRAMES = 1500  # encoder positions of a 30 s window
GENERATED = 20  # tokens decoded past the prefix when timing a step (fewer than jfk's, so none stop early)


def encoder_flops(config) -> float:
    """Multiply-adds x 2 of the encoder at batch 1: two convolutions, then per layer the four attention
    projections, the two attention products and the MLP."""
    d, mels, ffn = config.d_model, config.num_mel_bins, config.encoder_ffn_dim
    convolutions = 2 * (2 * FRAMES * mels * 3 * d) + 2 * (FRAMES * d * 3 * d)
    layer = 2 * FRAMES * (4 * d * d + 2 * d * ffn) + 2 * 2 * FRAMES * FRAMES * d
    return convolutions + config.encoder_layers * layer


def step_bytes(config) -> float:
    """Bytes a float32 decode step must read at batch 1: decoder layers, output projection, cross k/v."""
    d, ffn, layers = config.d_model, config.decoder_ffn_dim, config.decoder_layers
    per_layer = 6 * d * d + 2 * d * ffn  # self q, k, v, out; cross q, out; fc1, fc2
    cross_cache = 2 * FRAMES * d
    return 4 * (layers * (per_layer + cross_cache) + config.vocab_size * d)


def measure(model_name: str, repeats: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from weights_bridge import fetch
    from whisper_core import WhisperFeatureExtractor, load_audio
    from whisper_flax import FlaxWhisperForConditionalGeneration

    model = FlaxWhisperForConditionalGeneration.from_pretrained(fetch(model_name))
    config = model.config
    rng = np.random.default_rng(0)
    d, ffn = config.d_model, config.encoder_ffn_dim
    left, right = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in ((FRAMES, d), (d, ffn)))
    product = jax.jit(jnp.matmul)
    matmul_rate = 2 * FRAMES * d * ffn / best_time(lambda: product(left, right).block_until_ready(), repeats)
    embedding = model.params["model"]["decoder"]["embed_tokens"]["embedding"]
    state = jnp.asarray(rng.standard_normal((1, d)), jnp.float32)
    project = jax.jit(lambda x, table: x @ table.T)
    stream_rate = embedding.size * 4 / best_time(lambda: project(state, embedding).block_until_ready(), repeats)

    extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    features = extractor(load_audio(SAMPLE), sampling_rate=16000, return_tensors="np").input_features
    encoder = best_time(lambda: model._encoder_states(features, None).block_until_ready(), repeats)
    states = model._encoder_states(features, None)
    language = {} if model_name.endswith(".en") else {"language": "en"}

    def generate(tokens: int):
        return lambda: model.generate(encoder_outputs=(states,), max_new_tokens=tokens, **language).block_until_ready()

    step = (best_time(generate(GENERATED + 1), repeats) - best_time(generate(1), repeats)) / GENERATED
    return {
        "matmul GFLOP/s": matmul_rate / 1e9,
        "encoder ms": encoder * 1e3,
        "encoder floor ms": encoder_flops(config) / matmul_rate * 1e3,
        "stream GB/s": stream_rate / 1e9,
        "step ms": step * 1e3,
        "step floor ms": step_bytes(config) / stream_rate * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| model | matmul GFLOP/s | encoder ms | floor ms | ratio | stream GB/s | step ms | floor ms | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        row = measure(name, args.repeats)
        print(
            f"| {name} | {row['matmul GFLOP/s']:.0f} | {row['encoder ms']:.0f} | {row['encoder floor ms']:.0f} | "
            f"{row['encoder ms'] / row['encoder floor ms']:.2f} | {row['stream GB/s']:.1f} | {row['step ms']:.2f} | "
            f"{row['step floor ms']:.2f} | {row['step ms'] / row['step floor ms']:.2f} |"
        )


if __name__ == "__main__":
    main()
