"""``whisper-mb stream``: a file played in simulated real time, or live s16le audio from standard input,
through the streaming engine (:mod:`whisper_core.streaming`); one JSON line per committed word."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from weights_bridge import quantization
from weights_bridge.fetching import resolve_model
from whisper_core.audio import PCM16_BYTES, load_audio, pcm16_to_float
from whisper_core.streaming import POLICIES, OnlineProcessor, StreamingOptions, StreamStats, live, simulate
from whisper_core.transcribe import Transcriber

from .compile_cache import keep_compilations
from .registry import BACKENDS, load_backend


def read_pcm(stream: BinaryIO, seconds: float, sampling_rate: int) -> Iterator[np.ndarray]:
    """Raw s16le mono samples from a binary stream, in chunks of ``seconds``, as float32 in [-1, 1). A
    buffered read blocks until the chunk is whole, so only the last one is short (an odd byte is dropped)."""
    size = max(1, round(seconds * sampling_rate)) * PCM16_BYTES
    while data := stream.read(size):
        usable = len(data) - len(data) % PCM16_BYTES
        yield pcm16_to_float(data[:usable])


def _stream(args: argparse.Namespace) -> int:
    if (args.audio is None) == (not args.stdin):
        raise ValueError("give an audio FILE or --stdin (raw s16le 16 kHz mono), not both")
    if args.min_chunk_size <= 0:
        raise ValueError(f"--min-chunk-size must be positive, got {args.min_chunk_size}")
    directory = resolve_model(args.model)
    keep_compilations(args.backend)
    transcriber = Transcriber.from_pretrained(load_backend(args.backend, directory, args.compute_type), directory)
    options = StreamingOptions(
        policy=args.policy,
        language=args.language,
        task=args.task,
        buffer_trimming_sec=args.buffer_trimming_sec,
        frame_threshold=args.frame_threshold,
        vac=args.vac,
    )
    processor = OnlineProcessor(transcriber, options)
    stats = StreamStats()
    rate = transcriber.feature_extractor.sampling_rate
    if args.stdin:
        commits = live(processor, read_pcm(sys.stdin.buffer, args.min_chunk_size, rate), stats)
    else:
        commits = simulate(processor, load_audio(args.audio), args.min_chunk_size, stats)
    for commit in commits:
        print(json.dumps(commit.as_dict(), ensure_ascii=False), flush=True)
    print(json.dumps({"summary": stats.summary()}), flush=True)
    return 0


def add_stream(subparsers: argparse._SubParsersAction) -> None:
    """Register ``whisper-mb stream``."""
    parser = subparsers.add_parser(
        "stream", help="stream a file in simulated real time (or --stdin live audio); a JSON line per word"
    )
    parser.add_argument("audio", nargs="?", help="audio or video file, played in simulated real time")
    parser.add_argument("--stdin", action="store_true", help="read raw s16le 16 kHz mono from standard input")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="pt")
    parser.add_argument("--model", default="tiny.en", help="tiny.en, base, a checkpoint directory or a hub id")
    parser.add_argument(
        "--compute-type", choices=quantization.COMPUTE_TYPES, default="float32", help="as for transcribe"
    )
    parser.add_argument("--policy", choices=POLICIES, default="localagreement")
    parser.add_argument("--min-chunk-size", type=float, default=1.0, help="seconds of new audio per pass")
    parser.add_argument("--language", help="spoken language (default: detected)")
    parser.add_argument("--task", choices=("transcribe", "translate"))
    parser.add_argument("--buffer-trimming-sec", type=float, default=15.0, help="trim the buffer past this")
    parser.add_argument("--frame-threshold", type=int, default=25, help="AlignAtt: encoder frames (20 ms) at the end")
    parser.add_argument("--vac", action="store_true", help="voice activity control: skip silence, commit at pauses")
    parser.set_defaults(handler=_stream)
