"""Batched long-form transcription with voice activity detection, per backend, against faster-whisper 1.2.1.

Ours: ``Transcriber.transcribe([audio], TranscribeOptions(vad_filter=True, ...), batch_size=8)``, which
cuts the audio at silences with Silero VAD, gathers the speech into pieces of at most 30 s and decodes
8 pieces per generate call. The peer: faster-whisper's ``BatchedInferencePipeline(model).transcribe(audio,
batch_size=8, vad_filter=True, ...)`` on the bridge's CTranslate2 ``model.bin`` of the same weights, at
the same precision (float32 against CT2 float32, int8 against CT2 int8; ours through
``load_backend(backend, directory, compute_type)``), faster-whisper on cpu_threads=2. Both run in one
process per (backend, precision), loaded once, each warmed by one untimed call (TensorFlow's and JAX's
compilations happen there; its time is printed apart), then timed alternately A B A B for ``--pairs``
pairs (DESIGN §8). Each timing is the whole call on the 16 kHz array: VAD, features and decoding.

The same decoding on both sides as far as faster-whisper's batched pipeline allows: greedy
(beam_size=1), timestamps predicted (without_timestamps=False), no previous text as prompt (the
pipeline never conditions; our batched mode neither), no word timestamps, the same VAD settings
(faster-whisper's batched defaults: min_silence_duration_ms=160, pieces up to 30 s; ``--min-silence-ms``
changes both). Differences the APIs leave: our batched mode falls back through temperatures 0.0, 0.2,
..., 1.0 (best_of 1) when a piece fails the compression-ratio 2.4 / log-prob -1.0 checks, and skips a
piece judged silent (no-speech 0.6); faster-whisper's pipeline is given the same temperature list but
uses only its first, 0.0 (it has no fallback and ignores those thresholds), and it forces the first
timestamp to 0.0 where ours allows up to 1.0 s; on our side only, what the pieces of a file left when
their decoding closed more than 1 s before their end is decoded again, packed into as few windows as fit. Both pad a piece shorter than 30 s with zero
log-mel frames.
English (``language="en"`` on both sides for a multilingual model).

Prints per (backend, precision) the median time ratio ours / faster-whisper with its range over
pairs, the speed-up (its inverse), each side's real-time factor (median seconds of transcription /
seconds of audio; lower is faster), each side's word error rate against the audio's reference text
(Whisper's English normaliser) and the number of pieces each cut. Then ours batched against our own
sequential mode (batch_size=1, no VAD, the default options: openai-whisper's loop with the previous
text as prompt), alternated the same way: the speed-up of batching and both word error rates.

    .venv/bin/python benchmarks/bench_batched.py [--model base] [--backends pt tf flax]
        [--compute-types float32 int8] [--pairs 3] [--audio FILE] [--batch-size 8]
        [--against faster-whisper sequential] [--min-silence-ms 160]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_transcribe import TEMPERATURES
from timing import MIN_PAIRS, Alternation, alternate

PEER_THREADS = 2
WINDOW_SECONDS = 30  # the longest piece on both sides (faster-whisper's chunk_length)
AGAINST = ("faster-whisper", "sequential")


def worker(spec: dict) -> dict:
    """One (backend, precision): both comparisons in this process, ours loaded once. Returns each side's
    times (the warm-up call apart), the last run's text and the number of pieces each side cut."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from faster_whisper.vad import VadOptions as PeerVadOptions
    from faster_whisper.vad import collect_chunks
    from faster_whisper.vad import get_speech_timestamps as peer_speech_timestamps

    from whisper_core.transcribe import TranscribeOptions, Transcriber, speech_chunks
    from whisper_core.vad import VadOptions
    from whisper_mb import load_backend

    audio = np.load(spec["audio"])
    directory, batch_size, pairs = spec["directory"], spec["batch_size"], spec["pairs"]
    ours_language = None if spec["english"] else "en"
    vad = VadOptions(min_silence_duration_ms=spec["min_silence_ms"], max_speech_duration_s=WINDOW_SECONDS)
    batched_options = TranscribeOptions(
        language=ours_language, temperature=TEMPERATURES, vad_filter=True, vad_options=vad
    )
    transcriber = Transcriber.from_pretrained(load_backend(spec["backend"], directory, spec["compute_type"]), directory)
    texts: dict[str, str] = {}

    def ours_batched() -> None:
        texts["batched"] = transcriber.transcribe([audio], batched_options, batch_size=batch_size)[0].text

    result: dict = {"pieces": [len(speech_chunks(audio, transcriber, vad))]}
    if "faster-whisper" in spec["against"]:
        model = WhisperModel(spec["ct2"], device="cpu", compute_type=spec["compute_type"], cpu_threads=PEER_THREADS)
        pipeline = BatchedInferencePipeline(model)

        def peer() -> None:
            segments, _ = pipeline.transcribe(
                audio,
                language="en",
                task="transcribe",
                batch_size=batch_size,
                vad_filter=True,
                vad_parameters={"min_silence_duration_ms": spec["min_silence_ms"]},  # max: chunk_length, 30 s
                beam_size=1,
                temperature=list(TEMPERATURES),  # the pipeline decodes at the first only
                compression_ratio_threshold=2.4,
                log_prob_threshold=-1.0,
                no_speech_threshold=0.6,
                condition_on_previous_text=False,
                without_timestamps=False,
                word_timestamps=False,
            )
            texts["peer"] = "".join(segment.text for segment in segments)  # the generator decodes as read

        peer_vad = PeerVadOptions(min_silence_duration_ms=spec["min_silence_ms"], max_speech_duration_s=WINDOW_SECONDS)
        spans = peer_speech_timestamps(audio, peer_vad)
        result["pieces"].append(len(collect_chunks(audio, spans, max_duration=WINDOW_SECONDS)[0]) if spans else 0)
        timed = alternate(ours_batched, peer, pairs)
        result["faster-whisper"] = _times(timed) | {"texts": [texts["batched"], texts["peer"]]}
    if "sequential" in spec["against"]:
        sequential_options = TranscribeOptions(language=ours_language)

        def ours_sequential() -> None:
            texts["sequential"] = transcriber.transcribe([audio], sequential_options)[0].text

        timed = alternate(ours_batched, ours_sequential, pairs)
        result["sequential"] = _times(timed) | {"texts": [texts["batched"], texts["sequential"]]}
    return result


def _times(result: Alternation) -> dict:
    return {"ours": list(result.ours), "peer": list(result.peer), "first": list(result.first or ())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--backends", nargs="+", choices=("pt", "tf", "flax"), default=["pt", "tf", "flax"])
    parser.add_argument("--compute-types", nargs="+", choices=("float32", "int8"), default=["float32"])
    parser.add_argument("--pairs", type=int, default=3, help=f"alternated pairs per row (at least {MIN_PAIRS})")
    parser.add_argument("--audio", help="an audio file (default: the tests' ~2 minutes of speech, with WER)")
    parser.add_argument("--batch-size", type=int, default=8, help="pieces per generate call, both sides")
    parser.add_argument("--against", nargs="+", choices=AGAINST, default=list(AGAINST))
    parser.add_argument(
        "--min-silence-ms",
        type=int,
        default=160,
        help="VAD: silence that ends a span, both sides (160: faster-whisper's batched default)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.pairs < MIN_PAIRS:
        parser.error(f"--pairs: at least {MIN_PAIRS} (DESIGN §8), got {args.pairs}")

    from bench_longform import long_audio

    from weights_bridge.conversion import convert_checkpoint
    from weights_bridge.fetching import resolve_model
    from whisper_core import SAMPLE_RATE, WhisperTokenizer, load_audio
    from whisper_core.normalizers import EnglishTextNormalizer

    directory = resolve_model(args.model)
    normalize = EnglishTextNormalizer(WhisperTokenizer.from_pretrained(directory).english_spelling_normalizer)
    results = {}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        audio, reference = (load_audio(args.audio), None) if args.audio else long_audio(scratch)
        audio_path = scratch / "audio.npy"
        np.save(audio_path, audio)
        ct2 = convert_checkpoint(directory, scratch / "ct2", to="ct2", dtype="float32")
        for compute_type in args.compute_types:
            for backend in args.backends:
                spec = {
                    "backend": backend,
                    "compute_type": compute_type,
                    "directory": str(directory),
                    "ct2": str(ct2),
                    "audio": str(audio_path),
                    "english": args.model.endswith(".en"),
                    "batch_size": args.batch_size,
                    "pairs": args.pairs,
                    "against": args.against,
                    "min_silence_ms": args.min_silence_ms,
                }
                command = [sys.executable, __file__, "--worker", json.dumps(spec)]
                output = subprocess.run(command, capture_output=True, text=True)
                if output.returncode != 0:
                    raise SystemExit(f"{backend} {compute_type}: worker failed:\n{output.stderr[-3000:]}")
                results[backend, compute_type] = json.loads(output.stdout.strip().splitlines()[-1])

    duration = len(audio) / SAMPLE_RATE

    def wer(text: str) -> str:
        if reference is None:
            return "-"
        import jiwer

        return f"{jiwer.wer(normalize(reference), normalize(text)):.3f}"

    print(
        f"{args.model}, {duration:.1f} s of audio, VAD pieces of <= {WINDOW_SECONDS} s at batch {args.batch_size}, "
        f"greedy, timestamps; one process per row, both sides warm, {args.pairs} alternated pairs; "
        "medians (range over pairs); real-time factor = seconds of transcription / seconds of audio"
    )
    if "faster-whisper" in args.against:
        print(
            "| backend | precision | against | ours (s) | faster-whisper (s) | RTF ours | RTF faster-whisper "
            "| time ours / faster-whisper | speed-up (range) | first call ours / faster-whisper (s) "
            "| WER ours | WER faster-whisper | pieces ours / faster-whisper |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for (backend, compute_type), result in results.items():
            timed, row = _alternation(result["faster-whisper"]), result["faster-whisper"]
            time_ratios = [1 / ratio for ratio in timed.ratios]
            print(
                f"| {backend} | {compute_type} | faster-whisper batched | {timed.ours_s:.1f} | {timed.peer_s:.1f} "
                f"| {timed.ours_s / duration:.3f} | {timed.peer_s / duration:.3f} "
                f"| {timed.cell(time_ratios, unit='')} | {timed.cell()} "
                f"| {timed.first[0]:.1f} / {timed.first[1]:.1f} | {wer(row['texts'][0])} | {wer(row['texts'][1])} "
                f"| {result['pieces'][0]} / {result['pieces'][1]} |"
            )
    if "sequential" in args.against:
        print()
        print(
            "| backend | precision | against | batched (s) | sequential (s) | RTF batched | RTF sequential "
            "| speed-up of batching (range) | first call batched / sequential (s) | WER batched | WER sequential |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for (backend, compute_type), result in results.items():
            timed, row = _alternation(result["sequential"]), result["sequential"]
            print(
                f"| {backend} | {compute_type} | our sequential | {timed.ours_s:.1f} | {timed.peer_s:.1f} "
                f"| {timed.ours_s / duration:.3f} | {timed.peer_s / duration:.3f} | {timed.cell()} "
                f"| {timed.first[0]:.1f} / {timed.first[1]:.1f} | {wer(row['texts'][0])} | {wer(row['texts'][1])} |"
            )


def _alternation(times: dict) -> Alternation:
    return Alternation(tuple(times["ours"]), tuple(times["peer"]), tuple(times["first"]))


if __name__ == "__main__":
    main()
