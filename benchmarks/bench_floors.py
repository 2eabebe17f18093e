"""How close each backend's batch-1 generate is to what the machine allows: measured times against floors.

At batch 1 the encoder is matrix products and a decode step reads every decoder weight, the tied
output projection and the cached cross-attention keys and values once per token. So the floors are
the encoder's multiply-adds at the machine's matrix-product rate (measured on the encoder's MLP
shape), and a step's bytes at the rate a (1, d) x (d, vocab) product streams its matrix (through each
framework's plain product and, in PyTorch, through oneDNN's linear, which its decode step runs). Each
backend measures both rates with its own framework in its own process; the floor uses the best rate any
of them reached, and each backend's own rates are printed. A second step floor divides the same bytes
by the rate at which a framework merely reads memory (the sum of a 256 MB array): no product streams
faster on this machine, and none of ours comes close (2026-12-07: 36.8 and 61.0 GB/s read in two runs,
25.6-28.3 GB/s streamed).
The ratios measured / floor say how much an implementation could still gain on this machine.

The peer's row (unless ``--no-peer``; where CTranslate2 is installed): CTranslate2's encoder and decode step
on the same weights converted to its format (``compute_type`` as ours), timed the same way; its step from
the tokens it returned, since its ``max_length`` counts differently from our ``max_new_tokens``.

The encoder time is the encoder that generate runs; the step time is a cached decode step as each
backend's generate runs it: (generate with N new tokens - generate with 1) / (N - 1), both from the
same encoder output (so the encoder's noise stays out), the two alternated pair by pair and the
median difference taken. jfk yields more than N tokens, so neither stops early (checked).

    .venv/bin/python benchmarks/bench_floors.py [--backends pt tf flax] [--models tiny.en base] [--repeats 5]
        [--pairs 5] [--tokens 20] [--compute-type float32] [--no-peer]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
import numpy as np
from timing import alternate, best_time

FRAMES = 1500  # encoder positions of a 30 s window
BACKENDS = ("pt", "tf", "flax")
PEER = "ctranslate2"
READ_BYTES = 256 * 2**20  # the array whose sum measures the memory read rate: far beyond any cache
# Bytes a weight takes at a compute type; activations and the cross-attention cache stay float32.
WEIGHT_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


def encoder_flops(config: Any) -> float:
    """Multiply-adds x 2 of the encoder at batch 1: two convolutions, then per layer the four attention
    projections, the two attention products and the MLP."""
    d, mels, ffn = config.d_model, config.num_mel_bins, config.encoder_ffn_dim
    convolutions = 2 * (2 * FRAMES * mels * 3 * d) + 2 * (FRAMES * d * 3 * d)
    layer = 2 * FRAMES * (4 * d * d + 2 * d * ffn) + 2 * 2 * FRAMES * FRAMES * d
    return convolutions + config.encoder_layers * layer


def step_bytes(config: Any, weight_bytes: int) -> float:
    """Bytes a decode step must read at batch 1: decoder layers, output projection, cross k/v (float32)."""
    d, ffn, layers = config.d_model, config.decoder_ffn_dim, config.decoder_layers
    per_layer = 6 * d * d + 2 * d * ffn  # self q, k, v, out; cross q, out; fc1, fc2
    cross_cache = 2 * FRAMES * d
    return weight_bytes * (layers * per_layer + config.vocab_size * d) + 4 * layers * cross_cache


Product = Callable[..., Callable[[], object]]


def framework(backend: str) -> tuple[Callable[[np.ndarray], Any], Product, Product, Callable, Any]:
    """The backend's (to_tensor, product, streaming product, read, model class): ``product(left, right,
    transpose)`` returns a call that computes ``left @ right[.T]`` to completion with the framework's own
    kernels; the streaming product is the one its decode step multiplies a row by (PyTorch: oneDNN's
    linear where the build has it); ``read(x)`` returns a call that sums ``x``."""
    if backend == "pt":
        import torch

        from whisper_pt import WhisperForConditionalGeneration
        from whisper_pt.generation import _onednn_linear_works

        def product(left: Any, right: Any, transpose: bool = False) -> Callable[[], object]:
            def run() -> object:
                with torch.inference_mode():
                    return torch.matmul(left, right.T if transpose else right)

            return run

        def streaming(row: Any, table: Any, transpose: bool = True) -> Callable[[], object]:
            if not (transpose and _onednn_linear_works()):
                return product(row, table, transpose)
            return lambda: torch.ops.mkldnn._linear_pointwise(row, table, None, "none", [], "")

        return torch.from_numpy, product, streaming, lambda x: lambda: float(x.sum()), WhisperForConditionalGeneration
    if backend == "tf":
        import tensorflow as tf

        from whisper_tf import TFWhisperForConditionalGeneration

        matmul = tf.function(lambda a, b, transpose: tf.matmul(a, b, transpose_b=transpose), jit_compile=True)
        total = tf.function(tf.reduce_sum, jit_compile=True)

        def product(left: Any, right: Any, transpose: bool = False) -> Callable[[], object]:
            return lambda: matmul(left, right, transpose)

        return tf.constant, product, product, lambda x: lambda: float(total(x)), TFWhisperForConditionalGeneration
    import jax
    import jax.numpy as jnp

    from whisper_flax import FlaxWhisperForConditionalGeneration

    matmul = jax.jit(lambda a, b, transpose: a @ (b.T if transpose else b), static_argnums=2)
    total = jax.jit(jnp.sum)

    def product(left: Any, right: Any, transpose: bool = False) -> Callable[[], object]:
        return lambda: jax.block_until_ready(matmul(left, right, transpose))

    return jnp.asarray, product, product, lambda x: lambda: float(total(x)), FlaxWhisperForConditionalGeneration


def load(backend: str, model_class: Any, directory: str, compute_type: str) -> Any:
    """``from_pretrained`` as a user calls it: float32 by each backend's own argument, another
    compute type by ``compute_type=`` (the option all backends share)."""
    if compute_type != "float32":
        return model_class.from_pretrained(directory, compute_type=compute_type)
    if backend == "pt":
        import torch

        return model_class.from_pretrained(directory, torch_dtype=torch.float32).eval()
    if backend == "flax":
        return model_class.from_pretrained(directory, dtype="float32")
    return model_class.from_pretrained(directory)


def measure(backend: str, model_name: str, args: argparse.Namespace) -> dict[str, float]:
    from weights_bridge import fetch

    if backend == PEER:
        return measure_peer(model_name, args)
    to_tensor, product, streaming, read, model_class = framework(backend)
    directory = str(fetch(model_name))
    model = load(backend, model_class, directory, args.compute_type)
    config = model.config
    rng = np.random.default_rng(0)
    d, ffn = config.d_model, config.encoder_ffn_dim
    left, right = (to_tensor(rng.standard_normal(shape).astype(np.float32)) for shape in ((FRAMES, d), (d, ffn)))
    matmul_rate = 2 * FRAMES * d * ffn / best_time(product(left, right), args.repeats)
    table = to_tensor(rng.standard_normal((config.vocab_size, d)).astype(np.float32))
    state = to_tensor(rng.standard_normal((1, d)).astype(np.float32))
    stream_rate = config.vocab_size * d * 4 / best_time(streaming(state, table, True), args.repeats)
    # a read takes milliseconds and the rate drifts with the machine: best of many
    read_rate = READ_BYTES / best_time(read(to_tensor(np.ones(READ_BYTES // 4, np.float32))), 4 * args.repeats)

    features = to_tensor(common.jfk_features(config.num_mel_bins))

    def encode() -> Any:
        with model._inference():  # generate's own encoder call, in generate's no-gradient context
            return model._encoder_states(features, None)

    encoder = best_time(lambda: np.asarray(encode()), args.repeats)
    states = encode()
    language = {} if model_name.endswith(".en") else {"language": "en"}
    lengths: dict[int, int] = {}

    def generate(new_tokens: int) -> Callable[[], None]:
        def run() -> None:
            tokens = model.generate(encoder_outputs=(states,), max_new_tokens=new_tokens, **language)
            lengths[new_tokens] = np.asarray(tokens).shape[-1]

        return run

    steps = alternate(generate(1), generate(args.tokens + 1), args.pairs)
    if lengths[args.tokens + 1] - lengths[1] != args.tokens:
        raise SystemExit(f"{backend} {model_name}: generate stopped before {args.tokens + 1} tokens; lower --tokens")
    differences = [(many - one) / args.tokens for one, many in zip(steps.ours, steps.peer, strict=True)]
    return {
        "matmul": matmul_rate,
        "stream": stream_rate,
        "read": read_rate,
        "encoder": encoder,
        "encoder_flops": encoder_flops(config),
        "step": statistics.median(differences),
        "step_bytes": step_bytes(config, WEIGHT_BYTES[args.compute_type.split("_")[0]]),
    }


def measure_peer(model_name: str, args: argparse.Namespace) -> dict[str, float]:
    """CTranslate2's encoder and batch-1 decode step on ``model_name`` converted to its format: the step
    from the tokens it returned for two lengths (``<|endoftext|>`` suppressed, no timestamps, so every step
    returns a token), the two alternated pair by pair as ours."""
    import ctranslate2

    from weights_bridge import fetch
    from weights_bridge.conversion import convert_checkpoint
    from whisper_core import WhisperTokenizer
    from whisper_core.config import WhisperConfig

    directory = fetch(model_name)
    config = WhisperConfig.from_pretrained(directory)
    weights = "int8" if args.compute_type.startswith("int8") else "float32"
    with tempfile.TemporaryDirectory() as scratch:
        converted = convert_checkpoint(directory, Path(scratch) / "ct2", to="ct2", dtype=weights)
        model = ctranslate2.models.Whisper(str(converted), device="cpu", compute_type=args.compute_type)
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(common.jfk_features(config.num_mel_bins)))
    encoder = best_time(lambda: model.encode(features, to_cpu=True), args.repeats)
    states = model.encode(features, to_cpu=True)
    special = [] if model_name.endswith(".en") else ["<|en|>", "<|transcribe|>"]
    tokenizer = WhisperTokenizer.from_pretrained(directory)
    prompt = [config.decoder_start_token_id, *tokenizer.convert_tokens_to_ids([*special, "<|notimestamps|>"])]
    lengths: dict[int, int] = {}

    def generate(new_tokens: int) -> Callable[[], None]:
        def run() -> None:
            # max_length counts twice the tokens CTranslate2 returns for Whisper: ask for enough, count them
            (result,) = model.generate(
                states, [prompt], beam_size=1, max_length=2 * new_tokens, suppress_tokens=[config.eos_token_id]
            )
            lengths[new_tokens] = len(result.sequences_ids[0])

        return run

    steps = alternate(generate(1), generate(args.tokens + 1), args.pairs)
    tokens = lengths[args.tokens + 1] - lengths[1]
    differences = [(many - one) / tokens for one, many in zip(steps.ours, steps.peer, strict=True)]
    return {
        "encoder": encoder,
        "encoder_flops": encoder_flops(config),
        "step": statistics.median(differences),
        "step_bytes": step_bytes(config, WEIGHT_BYTES[weights]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--repeats", type=int, default=5, help="best of N for the rates and the encoder")
    parser.add_argument("--pairs", type=int, default=5, help="alternated (1 token, N tokens) generate pairs")
    parser.add_argument("--tokens", type=int, default=20, help="N - 1: the decode steps the step time spans")
    parser.add_argument("--compute-type", default="float32", help="float32 (default), float16, int8, ...")
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="without CTranslate2's row")
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(*args.worker, args)))
        return
    peer = [PEER] if args.peer and importlib.util.find_spec("ctranslate2") else []
    rows = {}
    for model_name in args.models:
        for backend in [*args.backends, *peer]:  # each in its own process: its own memory and thread pools
            command = [sys.executable, __file__, *sys.argv[1:], "--worker", backend, model_name]
            output = subprocess.run(command, capture_output=True, text=True)
            if output.returncode != 0:
                raise SystemExit(f"{backend} {model_name}: worker failed:\n{output.stderr[-3000:]}")
            rows[backend, model_name] = json.loads(output.stdout.strip().splitlines()[-1])
    ours = [row for (backend, _), row in rows.items() if backend != PEER]
    matmul = max(row["matmul"] for row in ours)
    stream = max(row["stream"] for row in ours)
    read = max(row["read"] for row in ours)
    print(
        f"{args.compute_type} weights. Floors at the best rates measured: {matmul / 1e9:.0f} GFLOP/s matrix product, "
        f"{stream / 1e9:.1f} GB/s streaming, {read / 1e9:.1f} GB/s reading. Per backend (GFLOP/s, GB/s streaming, "
        "GB/s reading): "
        + ", ".join(
            f"{b} {m}: {r['matmul'] / 1e9:.0f}, {r['stream'] / 1e9:.1f}, {r['read'] / 1e9:.1f}"
            for (b, m), r in rows.items()
            if b != PEER
        )
    )
    print("| model | backend | encoder ms | floor ms | ratio | step ms | floor ms | ratio | read floor ms | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (backend, model_name), row in rows.items():
        encoder_floor = row["encoder_flops"] / matmul
        step_floor, read_floor = row["step_bytes"] / stream, row["step_bytes"] / read
        print(
            f"| {model_name} | {backend} | {1000 * row['encoder']:.0f} | {1000 * encoder_floor:.0f} | "
            f"{row['encoder'] / encoder_floor:.2f} | {1000 * row['step']:.2f} | {1000 * step_floor:.2f} | "
            f"{row['step'] / step_floor:.2f} | {1000 * read_floor:.2f} | {row['step'] / read_floor:.2f} |"
        )


if __name__ == "__main__":
    main()
