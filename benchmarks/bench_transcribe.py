"""The ``whisper-mb transcribe`` CLI as a user runs it, per backend, against faster-whisper 1.2.1.

Every run is a whole process (start-up, imports, loading, compiling where the backend compiles, and
the transcription), timed from outside. Both sides read the same audio file (by default the tests'
~2 minutes of real and synthesized speech) with the same weights (faster-whisper reads the bridge's
CTranslate2 ``model.bin``) at the same precision: float32 against CT2 float32, int8 against CT2
int8 (ours through ``--compute-type``; a CLI without that flag has its row skipped). Two states,
alternated pair by pair (DESIGN §8):

- first process: ``WHISPER_MB_HOME`` (and torch inductor's cache) point to a fresh empty directory
  for every run, so no compilation cache exists (faster-whisper keeps none; its run is a new process);
- second process: one directory kept for all runs, filled by an untimed run of each side first.

Both sides start from installed bytecode: pip wrote faster-whisper's when it installed it, and the set-up
writes ours (:func:`byte_compile_ours`), which an editable install under ``PYTHONDONTWRITEBYTECODE``
(this machine's default) would otherwise compile afresh in every process.

The same decoding on both sides, our CLI's defaults matched in faster-whisper: greedy (beam_size=1),
temperature fallback 0.0, 0.2, ..., 1.0 with best_of=5 samples, compression-ratio 2.4, log-prob -1.0
and no-speech 0.6 thresholds, previous text as prompt, reset after a window decoded above
temperature 0.5, timestamps predicted (faster-whisper's without_timestamps=False), no VAD, no word
timestamps; faster-whisper on cpu_threads=2. Prints per (backend, precision, state) the median
time ratio ours / faster-whisper with its range over pairs (targets: first process <= 1.5, second
<= 1.0), the speed-up (its inverse), and each side's word error rate.

    .venv/bin/python benchmarks/bench_transcribe.py [--model base] [--backends pt tf flax]
        [--compute-types float32 int8] [--states first second] [--pairs 3] [--audio FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from timing import MIN_PAIRS, Alternation, Command, alternate_commands

HERE = Path(__file__).resolve().parent
# Our packages, byte-compiled before anything is timed (byte_compile_ours).
PACKAGES = ("whisper_core", "weights_bridge", "whisper_pt", "whisper_tf", "whisper_flax", "whisper_mb")
CLI = Path(sys.executable).with_name("whisper-mb")
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # `whisper-mb transcribe`'s default --temperature
TARGETS = {"first": 1.5, "second": 1.0}  # our time / faster-whisper's, from the issue
# Where a backend may keep compilations between processes, under their own variables; a cold run
# must not find them. WHISPER_MB_HOME holds the rest (the JAX cache, by default).
CACHE_VARIABLES = ("WHISPER_MB_JAX_CACHE", "JAX_COMPILATION_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR")


def faster_whisper(ct2: str, audio: str, compute_type: str, language: str) -> None:
    """The peer's process: load the CT2 model, transcribe with our CLI's decoding, print the text."""
    from faster_whisper import WhisperModel

    model = WhisperModel(ct2, device="cpu", compute_type=compute_type, cpu_threads=2)
    segments, _ = model.transcribe(
        audio,
        language=language,
        task="transcribe",
        beam_size=1,
        best_of=5,
        temperature=list(TEMPERATURES),
        compression_ratio_threshold=2.4,
        log_prob_threshold=-1.0,
        no_speech_threshold=0.6,
        condition_on_previous_text=True,
        prompt_reset_on_temperature=0.5,
        without_timestamps=False,
        word_timestamps=False,
        vad_filter=False,
    )
    print(json.dumps({"text": "".join(segment.text for segment in segments)}))  # the generator decodes as read


def write_wav(audio: np.ndarray, path: Path) -> None:
    """16 kHz mono 16-bit PCM: a file both CLIs decode the same way."""
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(16000)
        file.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def home_environment(scratch: Path, fresh: bool) -> Callable[[], Mapping[str, str]]:
    """The environment of one of our processes: ``WHISPER_MB_HOME`` a new empty directory under
    ``scratch`` for every process (``fresh``) or one kept for all, inductor's cache in it, no other
    cache location inherited. Making the directory is part of the untimed set-up."""
    kept = None if fresh else Path(tempfile.mkdtemp(dir=scratch, prefix="home-"))

    def environment() -> Mapping[str, str]:
        directory = kept or Path(tempfile.mkdtemp(dir=scratch, prefix="home-"))
        variables = {name: value for name, value in os.environ.items() if name not in CACHE_VARIABLES}
        return variables | {"WHISPER_MB_HOME": str(directory), "TORCHINDUCTOR_CACHE_DIR": str(directory / "inductor")}

    return environment


def byte_compile_ours() -> None:
    """Write our packages' bytecode, as ``pip install`` does for an installed package: without it each of
    our processes compiled its modules again (``import whisper_mb.cli``: 0.28-0.30 s against 0.21-0.22 s,
    2026-12-06). Stale bytecode is never read: Python checks it against the source."""
    import compileall

    for package in PACKAGES:
        if not compileall.compile_dir(str(HERE.parent / package), quiet=1):
            raise SystemExit(f"could not byte-compile {package}")


def accepts_compute_type() -> bool:
    help_text = subprocess.run([str(CLI), "transcribe", "--help"], capture_output=True, text=True).stdout
    return "--compute-type" in help_text


def texts(output: str) -> str:
    """The transcript in a process's output: the CLI prints one JSON line per file, the peer one line."""
    return " ".join(json.loads(line)["text"] for line in output.splitlines() if line.startswith("{"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--backends", nargs="+", choices=("pt", "tf", "flax"), default=["pt", "tf", "flax"])
    parser.add_argument("--compute-types", nargs="+", choices=("float32", "int8"), default=["float32", "int8"])
    parser.add_argument("--states", nargs="+", choices=tuple(TARGETS), default=list(TARGETS))
    parser.add_argument("--pairs", type=int, default=3, help=f"alternated pairs per row (at least {MIN_PAIRS})")
    parser.add_argument("--audio", help="an audio file (default: the tests' ~2 minutes of speech, with WER)")
    parser.add_argument("--faster-whisper", nargs=4, metavar=("CT2", "AUDIO", "TYPE", "LANG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.faster_whisper:
        faster_whisper(*args.faster_whisper)
        return

    import jiwer
    from bench_longform import long_audio

    from weights_bridge import fetch
    from weights_bridge.conversion import convert_checkpoint
    from whisper_core import SAMPLE_RATE, WhisperTokenizer, load_audio

    byte_compile_ours()
    directory = fetch(args.model)
    tokenizer = WhisperTokenizer.from_pretrained(directory)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        audio, reference = (load_audio(args.audio), None) if args.audio else long_audio(scratch)
        audio_path = scratch / "audio.wav"
        write_wav(audio, audio_path)
        ct2 = convert_checkpoint(directory, scratch / "ct2", to="ct2", dtype="float32")
        print(
            f"{args.model}, {len(audio) / SAMPLE_RATE:.1f} s of audio, greedy with temperature fallback, "
            f"previous text as prompt; whole processes, {args.pairs} alternated pairs per row; "
            "time ratio ours / faster-whisper: median (range)"
        )
        print(
            "| backend | precision | process | ours (s) | faster-whisper (s) | time ours / faster-whisper "
            "| target | speed-up (range) | WER ours | WER faster-whisper |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        english = args.model.endswith(".en")

        def wer(text: str) -> str:
            if reference is None:
                return "-"
            return f"{jiwer.wer(tokenizer.normalize(reference), tokenizer.normalize(text)):.3f}"

        skipped = []
        for compute_type in args.compute_types:
            if compute_type != "float32" and not accepts_compute_type():
                skipped.append(f"{compute_type}: `whisper-mb transcribe` has no --compute-type yet; rows skipped")
                continue
            peer = [sys.executable, __file__, "--faster-whisper", str(ct2), str(audio_path), compute_type, "en"]
            for backend in args.backends:
                ours = [str(CLI), "transcribe", str(audio_path), "--backend", backend, "--model", str(directory)]
                ours += [] if english else ["--language", "en"]
                ours += [] if compute_type == "float32" else ["--compute-type", compute_type]
                for state in args.states:
                    environment = home_environment(scratch, fresh=state == "first")
                    sides = (Command([*ours, "--quiet"], environment), Command(peer))
                    result = alternate_commands(*sides, args.pairs, warm=state == "second")
                    errors = [wer(texts(side.output)) for side in sides]
                    print(row(backend, compute_type, state, result, errors), flush=True)
        for line in skipped:
            print(line)


def row(backend: str, compute_type: str, state: str, result: Alternation, errors: list[str]) -> str:
    time_ratios = [1 / ratio for ratio in result.ratios]
    target = TARGETS[state]
    verdict = "met" if result.time_ratio <= target else "missed"
    return (
        f"| {backend} | {compute_type} | {state} process | {result.ours_s:.1f} | {result.peer_s:.1f} "
        f"| {result.cell(time_ratios, unit='')} | <= {target} ({verdict}) | {result.cell()} "
        f"| {errors[0]} | {errors[1]} |"
    )


if __name__ == "__main__":
    main()
