"""Log-mel feature extraction: ours against transformers 4.57.6 (NumPy path and torch path), one run.

Input: a batch of 16 clips of 30 s built from the real sample (jfk.flac, tiled with a different
offset per clip), plus a single-clip row. Prints best-of-N wall times and the ratios.

    .venv/bin/python benchmarks/bench_features.py [--repeats 5] [--batch 16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from timing import best_time

from whisper_core import WhisperFeatureExtractor, load_audio

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "jfk.flac"


def make_batch(batch: int) -> list[np.ndarray]:
    speech = load_audio(SAMPLE)
    tiled = np.tile(speech, 3 * 16000 * 30 // len(speech) + 1)
    return [tiled[i * 8000 : i * 8000 + 16000 * 30].copy() for i in range(batch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    import transformers.models.whisper.feature_extraction_whisper as reference_module
    from transformers import WhisperFeatureExtractor as Reference

    ours, theirs = WhisperFeatureExtractor(), Reference()
    rows = []
    for label, clips in ((f"batch {args.batch} x 30 s", make_batch(args.batch)), ("1 x 30 s", make_batch(1))):
        ours_time = best_time(lambda clips=clips: ours(clips, sampling_rate=16000), args.repeats)
        torch_time = best_time(lambda clips=clips: theirs(clips, sampling_rate=16000), args.repeats)
        reference_module.is_torch_available = lambda: False  # transformers' NumPy path
        numpy_time = best_time(lambda clips=clips: theirs(clips, sampling_rate=16000), max(1, args.repeats // 2))
        reference_module.is_torch_available = lambda: True
        difference = np.abs(
            ours(clips, sampling_rate=16000)["input_features"] - theirs(clips, sampling_rate=16000)["input_features"]
        ).max()
        rows.append((label, ours_time, numpy_time, torch_time, difference))

    print("| input | ours (s) | transformers NumPy (s) | transformers torch (s) | vs NumPy | vs torch | max abs diff |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, ours_time, numpy_time, torch_time, difference in rows:
        print(
            f"| {label} | {ours_time:.3f} | {numpy_time:.3f} | {torch_time:.3f} | "
            f"{numpy_time / ours_time:.2f}x faster | {torch_time / ours_time:.2f}x faster | {difference:.1e} |"
        )


if __name__ == "__main__":
    main()
