"""Long-form transcription speed: our three backends against openai-whisper (and faster-whisper).

Same weights everywhere (openai-whisper reads the bridge's OpenAI ``.pt``, faster-whisper its
CTranslate2 ``model.bin``), float32 on CPU, greedy with temperature fallback, previous text as
prompt. Each implementation runs in its own process, twice on the same audio (by default about 2
minutes of real and synthesized speech built as the tests build it). Prints both times, the
real-time factor of the first (processing time / audio duration; lower is faster), the word error
rate, and speed relative to openai-whisper, first run and second. TensorFlow's and Flax's first runs
include their compilations (one per new prompt length); their second runs reuse them.

    .venv/bin/python benchmarks/bench_longform.py [--model tiny.en] [--audio FILE] [--word-timestamps]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Implementation -> the module it needs (ours need none beyond the project).
IMPLEMENTATIONS = {
    "ours-pt": None,
    "ours-tf": None,
    "ours-flax": None,
    "openai-whisper": "whisper",
    "faster-whisper": "faster_whisper",
}


def worker(implementation: str, model_name: str, audio_path: str, word_timestamps: bool, scratch: str) -> dict:
    from weights_bridge import fetch

    directory = fetch(model_name)
    audio = np.load(audio_path)
    language = "en"
    if implementation.startswith("ours-"):
        from whisper_core.transcribe import TranscribeOptions, Transcriber
        from whisper_mb import load_backend

        transcriber = Transcriber.from_pretrained(load_backend(implementation[5:], str(directory)), str(directory))
        options = TranscribeOptions(
            language=None if model_name.endswith(".en") else language, word_timestamps=word_timestamps
        )

        def transcribe() -> str:
            return transcriber.transcribe([audio], options)[0].text
    elif implementation == "openai-whisper":
        import whisper

        from weights_bridge.conversion import convert_checkpoint

        model = whisper.load_model(
            str(convert_checkpoint(directory, Path(scratch) / "model.pt", to="openai")), device="cpu"
        )

        def transcribe() -> str:
            return whisper.transcribe(model, audio, fp16=False, language=language, word_timestamps=word_timestamps)[
                "text"
            ]
    else:
        from faster_whisper import WhisperModel

        from weights_bridge.conversion import convert_checkpoint

        ct2 = convert_checkpoint(directory, Path(scratch) / "ct2", to="ct2", dtype="float32")
        model = WhisperModel(str(ct2), device="cpu", compute_type="float32")

        def transcribe() -> str:
            segments, _ = model.transcribe(audio, language=language, beam_size=1, word_timestamps=word_timestamps)
            return "".join(segment.text for segment in segments)  # the generator decodes as it is read

    times = []
    for _ in range(2):
        start = time.perf_counter()
        text = transcribe()
        times.append(time.perf_counter() - start)
    return {"seconds": times[0], "second_seconds": times[1], "text": text}


def long_audio(scratch: Path) -> tuple[np.ndarray, str]:
    """The tests' 115 s of jfk and espeak-ng sentences, then one second of silence and jfk once more
    (126 s: the issue's "2+ minutes"), and its reference text."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import JFK_TEXT
    from tests.core.longform_audio import build_long_audio
    from whisper_core import SAMPLE_RATE, load_audio

    jfk = ROOT.parent / "shared" / "data" / "jfk.flac"
    built = build_long_audio(scratch, jfk)
    audio = np.concatenate([built.audio, np.zeros(SAMPLE_RATE, np.float32), load_audio(str(jfk))])
    return audio, f"{built.text} {JFK_TEXT}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--audio", help="an audio file (default: the tests' 2 minutes of speech, with a WER column)")
    parser.add_argument("--word-timestamps", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("IMPLEMENTATION", "AUDIO_NPY", "SCRATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.model, args.worker[1], args.word_timestamps, args.worker[2])))
        return

    from weights_bridge import fetch
    from whisper_core import SAMPLE_RATE, WhisperTokenizer, load_audio

    with tempfile.TemporaryDirectory() as scratch:
        if args.audio:
            audio, reference = load_audio(args.audio), None
        else:
            audio, reference = long_audio(Path(scratch))
        audio_path = Path(scratch) / "audio.npy"
        np.save(audio_path, audio)
        duration = len(audio) / SAMPLE_RATE
        available = [
            name for name, module in IMPLEMENTATIONS.items() if module is None or importlib.util.find_spec(module)
        ]
        results = {}
        for name in available:
            work = Path(scratch) / name
            work.mkdir()
            command = [sys.executable, __file__, "--model", args.model, "--worker", name, str(audio_path), str(work)]
            command += ["--word-timestamps"] if args.word_timestamps else []
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[name] = json.loads(output.strip().splitlines()[-1])

    tokenizer = WhisperTokenizer.from_pretrained(fetch(args.model))
    words = "word timestamps" if args.word_timestamps else "segment timestamps"
    print(f"{args.model}, {duration:.1f} s of audio, {words}, float32 CPU, two runs each in one process")
    print(
        "| implementation | first run s | second run s | real-time factor (first) | WER "
        "| speed vs openai-whisper (first) | (second) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    baseline = results.get("openai-whisper", {})
    for name, result in results.items():
        wer = "-"
        if reference is not None:
            import jiwer

            wer = f"{jiwer.wer(tokenizer.normalize(reference), tokenizer.normalize(result['text'])):.3f}"
        ratios = [f"{baseline[key] / result[key]:.2f}x" if baseline else "-" for key in ("seconds", "second_seconds")]
        print(
            f"| {name} | {result['seconds']:.1f} | {result['second_seconds']:.1f} | {result['seconds'] / duration:.3f} "
            f"| {wer} | {ratios[0]} | {ratios[1]} |"
        )


if __name__ == "__main__":
    main()
