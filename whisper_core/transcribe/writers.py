"""Write a transcription as txt, srt, vtt, tsv or json (the formats and timestamp styles of openai-whisper)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from ..fileio import atomic_path
from .results import Transcription


def format_timestamp(seconds: float, always_include_hours: bool = False, decimal_marker: str = ".") -> str:
    """``3725.5`` -> ``01:02:05.500``; hours are left out when zero unless asked for (WebVTT allows it)."""
    if seconds < 0:
        raise ValueError(f"a timestamp cannot be negative, got {seconds}")
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole, milliseconds = divmod(milliseconds, 1000)
    hours_part = f"{hours:02d}:" if always_include_hours or hours else ""
    return f"{hours_part}{minutes:02d}:{whole:02d}{decimal_marker}{milliseconds:03d}"


def _spoken(result: Transcription) -> list:
    """Segments that carry text (instantaneous or empty ones are kept in the result, not in subtitles)."""
    return [segment for segment in result.segments if segment.text.strip()]


def write_txt(result: Transcription, file: TextIO) -> None:
    for segment in _spoken(result):
        print(segment.text.strip(), file=file)


def write_srt(result: Transcription, file: TextIO) -> None:
    for index, segment in enumerate(_spoken(result), start=1):
        start = format_timestamp(segment.start, always_include_hours=True, decimal_marker=",")
        end = format_timestamp(segment.end, always_include_hours=True, decimal_marker=",")
        print(f"{index}\n{start} --> {end}\n{segment.text.strip()}\n", file=file)


def write_vtt(result: Transcription, file: TextIO) -> None:
    print("WEBVTT\n", file=file)
    for segment in _spoken(result):
        print(
            f"{format_timestamp(segment.start)} --> {format_timestamp(segment.end)}\n{segment.text.strip()}\n",
            file=file,
        )


def write_tsv(result: Transcription, file: TextIO) -> None:
    """Integer milliseconds, so spreadsheets do not reformat the times."""
    print("start\tend\ttext", file=file)
    for segment in _spoken(result):
        text = segment.text.strip().replace("\t", " ")
        print(f"{round(1000 * segment.start)}\t{round(1000 * segment.end)}\t{text}", file=file)


def write_json(result: Transcription, file: TextIO) -> None:
    json.dump(asdict(result), file, ensure_ascii=False)


WRITERS: dict[str, Callable[[Transcription, TextIO], None]] = {
    "txt": write_txt,
    "srt": write_srt,
    "vtt": write_vtt,
    "tsv": write_tsv,
    "json": write_json,
}


def write_result(
    result: Transcription, audio_path: str | Path, output_dir: str | Path, output_format: str
) -> list[Path]:
    """Write ``<output_dir>/<audio file stem>.<ext>`` for one format or ``"all"``, each atomically (a file is
    whole or absent, never half written); return the paths written."""
    formats = list(WRITERS) if output_format == "all" else [output_format]
    unknown = [name for name in formats if name not in WRITERS]
    if unknown:
        raise ValueError(f"unknown output format {unknown[0]!r}: choose one of {[*WRITERS, 'all']}")
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in formats:
        path = directory / f"{Path(audio_path).stem}.{name}"
        with atomic_path(path) as temp_path, temp_path.open("w", encoding="utf-8") as file:
            WRITERS[name](result, file)
        written.append(path)
    return written
