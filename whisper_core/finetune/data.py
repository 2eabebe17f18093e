"""Fine-tuning data: read a corpus, check every row once, and cut it into length-sorted batches.

Two layouts, as people already keep their data:

- an **audio folder** (``datasets``' AudioFolder): audio files beside ``metadata.jsonl`` or
  ``metadata.csv`` whose rows name ``file_name`` (relative to the folder), ``transcription`` and
  optionally ``language``;
- a **JSONL manifest**: one object per line with the audio path (``audio``, ``file_name`` or
  ``audio_filepath``, relative to the manifest), the text (``text``, ``transcription`` or ``sentence``)
  and optionally ``language``.

:func:`prepare` decodes every row's audio once (PyAV, resampled to 16 kHz mono), tokenizes its label
and keeps the row only if the audio is readable and non-empty, at most 30 s, and the label fits the
decoder; every other row is counted with its reason in a :class:`SkipReport`, never raised. Batches
then decode their audio again as they are drawn (decoding a clip costs milliseconds; holding a corpus
of decoded audio would not fit), sorted by length so a batch pads little, in an order a seed fixes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE, load_audio, resample
from ..feature_extraction import WhisperFeatureExtractor
from ..tokenizer import WhisperTokenizer

IGNORE_INDEX = -100  # label positions that carry no loss
MAX_SECONDS = 30.0  # one Whisper window
LABEL_BUCKET = 32  # labels are padded to a multiple of this: compiled steps see few shapes
AUDIO_KEYS = ("audio", "file_name", "audio_filepath", "path")
TEXT_KEYS = ("text", "transcription", "sentence")
METADATA_FILES = ("metadata.jsonl", "metadata.csv")


@dataclass(frozen=True)
class Example:
    """One row of a corpus: its audio (a file's path or bytes, or samples at 16 kHz), text, language and where
    it came from."""

    audio: str | bytes | np.ndarray | None  # None: the row had no audio (it is skipped as unreadable)
    text: str
    language: str | None = None
    origin: str = ""


@dataclass
class SkipReport:
    """Rows left out of a run and why, counted by reason with the first few places for each."""

    reasons: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, origin: str) -> None:
        self.reasons[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(origin)

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> str:
        if not self.total:
            return "no rows skipped"
        parts = [
            f"{count} {reason} (e.g. {', '.join(self.examples[reason])})" for reason, count in self.reasons.items()
        ]
        return f"{self.total} rows skipped: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"skipped": self.total, "reasons": dict(self.reasons), "examples": self.examples}


def _pick(row: dict[str, Any], keys: Sequence[str]) -> Any:
    return next((row[key] for key in keys if row.get(key) not in (None, "")), None)


def _rows(path: Path) -> Iterator[tuple[dict[str, Any] | None, str]]:
    """(row or None when unparsable, its origin) for a metadata.jsonl / manifest or a metadata.csv."""
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as file:
            for number, row in enumerate(csv.DictReader(file), start=2):
                yield row, f"{path.name}:{number}"
        return
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            yield (row if isinstance(row, dict) else None), f"{path.name}:{number}"


def read_corpus(source: str | os.PathLike, report: SkipReport | None = None) -> list[Example]:
    """The rows of an audio folder or a JSONL manifest; rows without audio or text go to ``report``."""
    path = Path(source)
    if path.is_dir():
        metadata = next((path / name for name in METADATA_FILES if (path / name).is_file()), None)
        if metadata is None:
            raise FileNotFoundError(f"{path} holds no {' or '.join(METADATA_FILES)}: not an audio folder")
    elif path.is_file():
        metadata = path
    else:
        raise FileNotFoundError(f"no corpus at {path}: give an audio folder or a .jsonl manifest")
    report = report if report is not None else SkipReport()
    examples = []
    for row, origin in _rows(metadata):
        if row is None:
            report.add("unparsable rows", origin)
            continue
        audio, text = _pick(row, AUDIO_KEYS), _pick(row, TEXT_KEYS)
        if audio is None or text is None:
            report.add("rows without audio or text", origin)
            continue
        audio_path = Path(str(audio))
        audio_path = audio_path if audio_path.is_absolute() else metadata.parent / audio_path
        examples.append(Example(str(audio_path), str(text), row.get("language") or None, origin))
    return examples


def from_dataset(dataset: Iterable[Any], audio_column: str = "audio", text_column: str | None = None) -> list[Example]:
    """Rows of a ``datasets.Dataset`` (or any iterable of dicts, or of :class:`Example`).

    The audio column may hold a path, a dict with ``bytes`` and/or ``path`` (``datasets.Audio`` without
    decoding), or a dict with ``array`` and ``sampling_rate`` (decoded samples, resampled here). A
    ``datasets`` audio column that would decode is read undecoded instead, so its files go through PyAV
    like every other corpus's (and ``datasets``' own decoder, torchcodec, is not needed). The text is
    ``text_column``, by default the first of ``text``, ``transcription``, ``sentence`` a row has.
    """
    feature = getattr(dataset, "features", None) and dataset.features.get(audio_column)
    if dataclasses.is_dataclass(feature) and getattr(feature, "decode", False) and hasattr(dataset, "cast_column"):
        dataset = dataset.cast_column(audio_column, dataclasses.replace(feature, decode=False))
    examples = []
    for index, row in enumerate(dataset):
        if isinstance(row, Example):
            examples.append(row)
            continue
        text = row[text_column] if text_column is not None else _pick(row, TEXT_KEYS)
        audio = _dataset_audio(row[audio_column])
        examples.append(Example(audio, "" if text is None else str(text), row.get("language") or None, f"row {index}"))
    return examples


def _dataset_audio(value: Any) -> str | bytes | np.ndarray | None:
    if not isinstance(value, dict):
        return value
    if value.get("array") is not None:
        return resample(value["array"], int(value.get("sampling_rate") or SAMPLE_RATE))
    return bytes(value["bytes"]) if value.get("bytes") else value.get("path")


@dataclass(frozen=True)
class Prepared:
    """A row that passed every check: its audio, its label ids (without the start token) and its length."""

    example: Example
    labels: tuple[int, ...]
    seconds: float


def label_ids(tokenizer: WhisperTokenizer, text: str, language: str | None, task: str | None) -> list[int]:
    """``<|lang|><|task|><|notimestamps|> text <|endoftext|>`` (the start token dropped: the model puts it
    back when it shifts the labels right, and it is never predicted)."""
    tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    ids = tokenizer(text)["input_ids"]
    start = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    return list(ids[1:] if ids and ids[0] == start else ids)


def prepare(
    examples: Sequence[Example],
    tokenizer: WhisperTokenizer,
    max_label_length: int,
    *,
    language: str | None = None,
    task: str | None = None,
    report: SkipReport | None = None,
) -> tuple[list[Prepared], SkipReport]:
    """Check every row once (see the module docstring); ``language`` applies to rows that name none."""
    report = report if report is not None else SkipReport()
    prepared = []
    for example in examples:
        try:
            audio = example_audio(example.audio)
        except (OSError, ValueError, RuntimeError) as error:
            report.add("unreadable audio", f"{example.origin} ({type(error).__name__})")
            continue
        seconds = len(audio) / SAMPLE_RATE
        if not len(audio) or not np.isfinite(audio).all():
            report.add("empty or non-finite audio", example.origin)
            continue
        if seconds > MAX_SECONDS:
            report.add("audio over 30 s", f"{example.origin} ({seconds:.1f} s)")
            continue
        try:
            labels = label_ids(tokenizer, example.text, example.language or language, task)
        except ValueError as error:  # an unknown language
            report.add("labels that cannot be tokenized", f"{example.origin} ({error})")
            continue
        if len(labels) > max_label_length:
            report.add("labels longer than the decoder allows", f"{example.origin} ({len(labels)} tokens)")
            continue
        prepared.append(Prepared(example, tuple(labels), seconds))
    return prepared, report


def example_audio(audio: str | bytes | np.ndarray | None) -> np.ndarray:
    """An :class:`Example`'s audio as 16 kHz mono float32 samples (files are decoded on every call)."""
    if isinstance(audio, np.ndarray):
        return np.asarray(audio, np.float32)
    if not isinstance(audio, str | bytes | os.PathLike):
        raise ValueError(f"cannot read audio from {type(audio).__name__}")
    return load_audio(audio)


def pad_labels(rows: Sequence[Sequence[int]], length: int | None = None, bucket: int = 1) -> np.ndarray:
    """Label rows -> ``[b, length]`` int32 padded with -100; ``length`` defaults to the longest row rounded
    up to a multiple of ``bucket``."""
    longest = max((len(row) for row in rows), default=0)
    length = length if length is not None else -(-max(longest, 1) // bucket) * bucket
    if longest > length:
        raise ValueError(f"a label sequence is longer than length={length}")
    labels = np.full((len(rows), length), IGNORE_INDEX, np.int32)
    for i, row in enumerate(rows):
        labels[i, : len(row)] = row
    return labels


def make_batch(
    items: Sequence[Prepared], extractor: WhisperFeatureExtractor, rows: int | None = None
) -> dict[str, np.ndarray]:
    """``input_features [rows, mels, 3000]`` float32 and ``labels [rows, T]`` (T a multiple of
    :data:`LABEL_BUCKET`). A short batch (an epoch's last) is filled up to ``rows`` with silent rows
    whose labels are all -100: they carry no loss and no gradient, and every update sees one shape."""
    audios = [example_audio(item.example.audio) for item in items]
    labels = [item.labels for item in items]
    fill = 0 if rows is None else rows - len(items)
    if fill < 0:
        raise ValueError(f"{len(items)} items do not fit in a batch of {rows} rows")
    audios += [np.zeros(SAMPLE_RATE, np.float32)] * fill
    labels += [()] * fill
    features = extractor(audios, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"]
    return {
        "input_features": np.asarray(features, np.float32),
        "labels": pad_labels(labels, bucket=LABEL_BUCKET),
    }


def micro_batches(batch: dict[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
    """``count`` micro-batches of a batch: micro-batch ``j`` holds rows ``j, j + count, ...``, as
    :func:`whisper_flax.training.loss_and_grads` cuts it, so every backend sums the same groups."""
    size = len(batch["labels"])
    if size % count:
        raise ValueError(f"a batch of {size} rows does not split into {count} micro-batches")
    return [{key: value[j::count] for key, value in batch.items()} for j in range(count)]


@dataclass
class BatchOrder:
    """Length-sorted batches of ``batch_size`` rows, their order shuffled per epoch by ``seed``; ``epoch``
    and ``position`` say where a run stands, so a resumed run draws exactly the batches that were next."""

    sizes: Sequence[float]
    batch_size: int
    seed: int
    epoch: int = 0
    position: int = 0

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if not len(self.sizes):
            raise ValueError("no rows to train on (every row was skipped, or the corpus is empty)")
        by_length = np.argsort(np.asarray(self.sizes), kind="stable")
        self._batches = [by_length[i : i + self.batch_size].tolist() for i in range(0, len(by_length), self.batch_size)]

    @property
    def batches_per_epoch(self) -> int:
        return len(self._batches)

    def _epoch_order(self) -> list[int]:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self._batches)).tolist()

    def next(self) -> list[int]:
        """The row indices of the next batch (a batch may be short: the epoch's last rows)."""
        if self.position >= len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
        indices = self._batches[self._epoch_order()[self.position]]
        self.position += 1
        return indices

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "batch_size": self.batch_size}
