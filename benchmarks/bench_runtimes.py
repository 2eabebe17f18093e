"""Transcribing jfk.flac (11 s) with the runtimes our checkpoints ship to, beside ours on the same weights.

A reference figure for issue 19's formats rather than a race on equal terms: each runtime runs the
file we wrote for it, in the precision it is built for, and ours runs the canonical checkpoint in the
nearest compute type. Pairs, each timed alternately (ours, then the runtime; DESIGN §8), warm, in
one process, 2 threads everywhere:

- whisper.cpp (``pywhispercpp``) on our float16 GGML file, against our PyTorch float32;
- whisper.cpp on our q8_0 file, against our PyTorch int8;
- faster-whisper ``compute_type="int8"`` on our int8 ``model.bin``, against our PyTorch int8;
- mlx-whisper on ``mlx[cpu]`` (float32 arithmetic) on our mlx directory, against our PyTorch float32.

Greedy, English, no timestamps beyond each runtime's default. Prints time per run, the time ratio
(ours / runtime, median of pairs and range) and each side's WER against the spoken text.

    .venv/bin/python benchmarks/bench_runtimes.py [--model tiny.en] [--pairs 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import alternate
from tests.conftest import JFK_FLAC, JFK_TEXT
from tests.helpers import english_wer

THREADS = 2


def ours(directory: Path, compute_type: str, audio: np.ndarray, language: str | None) -> Callable[[], str]:
    from whisper_core.transcribe import TranscribeOptions, Transcriber
    from whisper_mb import load_backend

    transcriber = Transcriber.from_pretrained(load_backend("pt", str(directory), compute_type), str(directory))
    options = TranscribeOptions(language=language, temperature=(0.0,), condition_on_prev_tokens=False)
    return lambda: transcriber.transcribe([audio], options)[0].text


def whisper_cpp(path: Path, audio: np.ndarray) -> Callable[[], str]:
    from pywhispercpp.model import Model

    model = Model(str(path), n_threads=THREADS, print_progress=False, print_realtime=False)
    return lambda: " ".join(segment.text for segment in model.transcribe(audio, language="en"))


def faster_whisper(directory: Path, audio: np.ndarray) -> Callable[[], str]:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(directory), device="cpu", compute_type="int8", cpu_threads=THREADS)

    def transcribe() -> str:
        segments, _ = model.transcribe(audio, language="en", beam_size=1, temperature=0.0)
        return "".join(segment.text for segment in segments)

    return transcribe


def mlx_whisper(directory: Path, audio: np.ndarray) -> Callable[[], str]:
    import mlx_whisper as mlx

    return lambda: mlx.transcribe(audio, path_or_hf_repo=str(directory), language="en", fp16=False, temperature=0.0)[
        "text"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()

    import torch

    from weights_bridge import fetch
    from weights_bridge.conversion import convert_checkpoint
    from whisper_core.audio import load_audio

    torch.set_num_threads(THREADS)
    source = fetch(args.model)
    audio = load_audio(JFK_FLAC).astype(np.float32)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        files = {
            "ggml f16": convert_checkpoint(source, out / "f16.bin", to="ggml"),
            "ggml q8_0": convert_checkpoint(source, out / "q8.bin", to="ggml", dtype="q8_0"),
            "ct2 int8": convert_checkpoint(source, out / "int8", to="ct2", dtype="int8"),
            "mlx": convert_checkpoint(source, out / "mlx", to="mlx"),
        }
        contests = [
            ("whisper.cpp, our float16 GGML", "float32", lambda: whisper_cpp(files["ggml f16"], audio)),
            ("whisper.cpp, our q8_0 GGML", "int8", lambda: whisper_cpp(files["ggml q8_0"], audio)),
            ("faster-whisper int8, our int8 model.bin", "int8", lambda: faster_whisper(files["ct2 int8"], audio)),
            ("mlx-whisper (CPU, float32), our mlx directory", "float32", lambda: mlx_whisper(files["mlx"], audio)),
        ]
        print(
            f"{args.model}, jfk.flac ({len(audio) / 16000:.1f} s), {args.pairs} alternated pairs, warm, {THREADS} threads\n"
        )
        print(
            "| runtime (file we wrote) | ours (PyTorch) | ours s | runtime s | ours / runtime time | WER ours / runtime |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        loaded: dict[str, Callable[[], str]] = {}
        for label, compute_type, make_peer in contests:
            if compute_type not in loaded:
                language = None if args.model.endswith(".en") else "en"
                loaded[compute_type] = ours(source, compute_type, audio, language)
            mine, peer = loaded[compute_type], make_peer()
            result = alternate(mine, peer, args.pairs)
            wer_ours, wer_peer = english_wer(JFK_TEXT, mine()), english_wer(JFK_TEXT, peer())
            ratios = [1 / ratio for ratio in result.ratios]
            print(
                f"| {label} | {compute_type} | {result.ours_s:.2f} | {result.peer_s:.2f} | "
                f"{result.cell(ratios, unit='')} | {wer_ours:.3f} / {wer_peer:.3f} |"
            )


if __name__ == "__main__":
    main()
