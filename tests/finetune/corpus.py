"""A small synthesized fine-tuning corpus: espeak-ng sentences around made-up names that a stock model
cannot spell, as audio folders (``metadata.csv`` / ``metadata.jsonl``) the way users keep their data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.conftest import synthesize

NAMES = ("Zorvex", "Kelbrax", "Quintara", "Mordavel")
TRAIN_FRAMES = (
    "{name} opened the meeting this morning.",
    "Please send the report to {name} today.",
    "The new version of {name} is ready.",
    "We asked {name} about the budget.",
    "Everyone agreed that {name} was right.",
    "Call {name} before the train leaves.",
)
EVAL_FRAMES = ("I think {name} will arrive tomorrow.", "The team from {name} won again.")


def build(directory: Path, frames: tuple[str, ...], layout: str = "csv", voice: str = "en-us") -> Path:
    """An audio folder of every frame with every name; ``layout`` "csv" or "jsonl" for the metadata."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, frame in enumerate(frames):
        for j, name in enumerate(NAMES):
            text = frame.format(name=name)
            path = synthesize(text, voice, directory, f"clip{i:02d}{j}")
            rows.append({"file_name": path.name, "transcription": text})
    if layout == "csv":
        with open(directory / "metadata.csv", "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=["file_name", "transcription"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        (directory / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return directory
