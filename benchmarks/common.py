"""What the short-form generate benchmarks share: the input, the alternating comparison and the table.

Each framework's script only says how its two sides (ours and transformers 4.57.6) encode and
generate; this module times them alternately (timing.py) at every batch size and prints one row per
(model, batch). Each model runs in its own process, both sides loaded in it, so a pair's two runs
are seconds apart and see the same machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from timing import MIN_PAIRS, Alternation, alternate_measurements

Option = tuple[str, dict[str, Any]]  # an extra command-line flag and its argparse keywords
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "jfk.flac"


def jfk_features(num_mel_bins: int = 80) -> np.ndarray:
    """``[1, mels, 3000]`` float32 log-mel features of jfk padded to 30 s (one short-form window)."""
    from whisper_core import WhisperFeatureExtractor, load_audio

    extractor = WhisperFeatureExtractor(feature_size=num_mel_bins)
    features = extractor(load_audio(SAMPLE), sampling_rate=16000, return_tensors="np").input_features
    return np.asarray(features, np.float32)


@dataclass
class Side:
    """One implementation: ``encode(features)`` runs its encoder to completion; ``generate(features)``
    returns the token ids ``[batch, length]`` as NumPy (so the work is finished when it returns)."""

    encode: Callable[[Any], object]
    generate: Callable[[Any], np.ndarray]


@dataclass
class Contest:
    """What a framework's script builds for one model: both sides, the batch-1 input in the framework's
    tensors, how to repeat it to a batch, and how many tokens an output row generated."""

    ours: Side
    peer: Side
    single: Any
    repeat: Callable[[Any, int], Any]
    count: Callable[[np.ndarray], int]


def token_counter(model_name: str, directory: str | Path) -> Callable[[np.ndarray], int]:
    """Decode steps behind one output row: its text tokens, plus one for the step that produced
    <|endoftext|>. Rows differ between implementations (transformers' PyTorch output drops the prefix
    <|startoftranscript|> [<|en|> <|transcribe|>] <|notimestamps|> and <|endoftext|>; its XLA output is
    padded to max_length), so both are read down to their text; equal counts mean the same work."""
    config = json.loads((Path(directory) / "generation_config.json").read_text())
    start, eos = config["decoder_start_token_id"], config["eos_token_id"]
    prefix = 2 if model_name.endswith(".en") else 4

    def count(row: np.ndarray) -> int:
        tokens = row.tolist()
        if tokens and tokens[0] == start:
            tokens = tokens[prefix:]
        return (tokens.index(eos) if eos in tokens else len(tokens)) + 1

    return count


def compare(contest: Contest, batches: list[int], pairs: int) -> list[dict]:
    """One dict per batch size: both sides' generate times alternated, each side's first generate call
    (a compiled backend's compile) and decode steps. At batch 1 each run also times the side's encoder
    just before its generate (apart from the generate time), so the per-token figure (generate -
    encoder) comes from two timings seconds apart rather than minutes."""
    ours, peer, single = contest.ours, contest.peer, contest.single
    rows = []
    outputs: dict[str, np.ndarray] = {}  # the last output of each side
    encoder: dict[str, list[float]] = {"ours": [], "peer": []}  # batch 1's, the warm-up's first
    for batch in batches:
        features = contest.repeat(single, batch)

        def run(side: Side, name: str, features: Any = features, batch: int = batch) -> float:
            if batch == 1:
                start = time.perf_counter()
                side.encode(single)
                encoder[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            outputs[name] = side.generate(features)
            return time.perf_counter() - start

        result = alternate_measurements(lambda: run(ours, "ours"), lambda: run(peer, "peer"), pairs)
        rows.append(
            {
                "batch": batch,
                "ours": list(result.ours),
                "peer": list(result.peer),
                "first": list(result.first or ()),
                "encoder": [statistics.median(encoder[name][1:]) for name in encoder] if batch == 1 else None,
                "tokens": [contest.count(outputs["ours"][0]), contest.count(outputs["peer"][0])],
            }
        )
    return rows


def main(doc: str, worker: Callable[[str, argparse.Namespace], Contest], options: Sequence[Option] = ()) -> None:
    """The command line of a generate benchmark. ``worker(model, args)`` runs in a child process per
    model (its memory and thread pools its own; it gets the same arguments) and the parent prints the
    table. ``options``: the script's own (flag, argparse keywords)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16], help="1 is always run (per-token figure)")
    parser.add_argument("--pairs", type=int, default=5, help=f"alternated pairs (at least {MIN_PAIRS})")
    for flag, keywords in options:
        parser.add_argument(flag, **keywords)
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batches = sorted({1, *args.batches})
    if args.worker:
        print(json.dumps(compare(worker(args.worker, args), args.batches, args.pairs)))
        return
    print(f"alternated ours/transformers, {args.pairs} pairs after one warm-up call each; medians, speed-up range")
    print(
        "| model | batch | ours (ms) | transformers (ms) | speed-up (range) | first call ours / transformers (s) "
        "| encoder ours / transformers (ms) | per token ours / transformers (ms) | steps |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model_name in args.models:
        command = [sys.executable, sys.modules["__main__"].__file__, *sys.argv[1:], "--worker", model_name]
        output = subprocess.run(command, capture_output=True, text=True)
        if output.returncode != 0:
            raise SystemExit(f"{model_name}: worker failed:\n{output.stderr[-3000:]}")
        for row in json.loads(output.stdout.strip().splitlines()[-1]):
            print(_row(model_name, row))


def _row(model_name: str, row: dict) -> str:
    result = Alternation(tuple(row["ours"]), tuple(row["peer"]), tuple(row["first"]))
    times = (result.ours_s, result.peer_s)
    encoder, per_token = "-", "-"
    if row["encoder"]:  # batch 1: per token = (generate - encoder) / decode steps
        encoder_ms = [1000 * seconds for seconds in row["encoder"]]
        encoder = f"{encoder_ms[0]:.0f} / {encoder_ms[1]:.0f}"
        per_token = " / ".join(
            f"{(1000 * t - e) / n:.2f}" for t, e, n in zip(times, encoder_ms, row["tokens"], strict=True)
        )
    return (
        f"| {model_name} | b={row['batch']} | {1000 * times[0]:.0f} | {1000 * times[1]:.0f} | {result.cell()} "
        f"| {result.first[0]:.1f} / {result.first[1]:.1f} | {encoder} | {per_token} "
        f"| {row['tokens'][0]} / {row['tokens'][1]} |"
    )
