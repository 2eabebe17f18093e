"""Fine-tuning throughput (audio-seconds per second): each backend's ``Finetuner`` against transformers
4.57's PyTorch ``Seq2SeqTrainer``, the path of the transformers fine-tuning blog post.

Same data (a synthesized espeak-ng corpus, as the tests build it), same model (tiny.en), batch size,
learning rate and number of updates. Every run is its own process (a fresh model, its memory its own);
it takes one untimed update first (the compiled backends compile there; the Trainer sets up), then
times the next ones: ours include computing each batch's log-mel features (the loop does that as it
draws batches); the Trainer's batches come from features computed beforehand, as the blog's
``dataset.map`` does. Ours and the Trainer alternate run by run (DESIGN §8) and the ratio is the
median over pairs. CPU, float32, 2 threads.

    .venv/bin/python benchmarks/bench_finetune.py [--backends pt tf flax] [--updates 3] [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import alternate_measurements
from tests.finetune import corpus

BATCH = 8
LEARNING_RATE = 1e-5


def ours(backend: str, directory: Path, rows: list, extractor: object, updates: int) -> float:
    """Seconds for ``updates`` updates of our loop (the model loaded beforehand, untimed)."""
    from whisper_core.finetune import BatchOrder, FinetuneOptions
    from whisper_core.finetune.data import make_batch
    from whisper_mb.registry import backend as spec

    options = FinetuneOptions(max_steps=updates + 1, batch_size=BATCH, lr=LEARNING_RATE)
    trainer = spec(backend).finetuner().from_pretrained(directory, options, updates + 1)
    order = BatchOrder([row.seconds for row in rows], BATCH, seed=0)
    batches = (make_batch([rows[i] for i in order.next()], extractor, BATCH) for _ in range(updates + 1))
    ends: list[float] = []
    trainer.fit(batches, updates + 1, lambda logs: ends.append(time.perf_counter()))
    return ends[-1] - ends[0]  # the first update compiles: untimed


def trainer_run(directory: Path, features: list[dict], updates: int, scratch: str) -> float:
    """Seconds of ``Seq2SeqTrainer.train()`` for ``updates`` updates on precomputed features."""
    import torch
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback, WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(directory)

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(item["labels"]) for item in items)
        labels = torch.full((len(items), longest), -100, dtype=torch.long)
        for row, item in enumerate(items):
            labels[row, : len(item["labels"])] = torch.tensor(item["labels"])
        return {
            "input_features": torch.from_numpy(np.stack([item["input_features"] for item in items])),
            "labels": labels,
        }

    arguments = Seq2SeqTrainingArguments(
        output_dir=scratch, per_device_train_batch_size=BATCH, max_steps=updates + 1, learning_rate=LEARNING_RATE,
        warmup_steps=0, report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=True,
        dataloader_num_workers=0, seed=0, remove_unused_columns=False,
    )  # fmt: skip
    times: list[float] = []

    class Clock(TrainerCallback):  # the time of every update after the first
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            times.append(time.perf_counter())

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            times.append(time.perf_counter())

    trainer = Seq2SeqTrainer(
        model=model, args=arguments, train_dataset=features, data_collator=collate, callbacks=[Clock()]
    )
    trainer.train()
    return times[-1] - times[1]


def child(side: str, data_path: str, updates: int) -> None:
    """One timed run in this process; prints its seconds."""
    import torch

    torch.set_num_threads(2)
    with open(data_path, "rb") as file:
        directory, rows, features = pickle.load(file)
    if side == "trainer":
        with tempfile.TemporaryDirectory() as scratch:
            seconds = trainer_run(directory, features, updates, scratch)
    else:
        from whisper_core.feature_extraction import WhisperFeatureExtractor

        seconds = ours(side, directory, rows, WhisperFeatureExtractor.for_checkpoint(str(directory)), updates)
    print(json.dumps({"seconds": seconds}))


def run(side: str, data_path: Path, updates: int) -> float:
    done = subprocess.run(
        [sys.executable, __file__, "--child", side, str(data_path), "--updates", str(updates)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"{side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["pt", "tf", "flax"])
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.updates)
        return

    from weights_bridge import fetch
    from whisper_core.feature_extraction import WhisperFeatureExtractor
    from whisper_core.finetune import example_audio, prepare, read_corpus
    from whisper_core.tokenizer import WhisperTokenizer

    directory = fetch("tiny.en")
    tokenizer = WhisperTokenizer.from_pretrained(directory)
    extractor = WhisperFeatureExtractor.for_checkpoint(str(directory))
    with tempfile.TemporaryDirectory() as scratch:
        data = corpus.build(Path(scratch) / "train", corpus.TRAIN_FRAMES)
        rows, _ = prepare(read_corpus(data), tokenizer, 448)
        audio_per_run = args.updates * BATCH * float(np.mean([row.seconds for row in rows]))
        features = [
            {"input_features": extractor([example_audio(row.example.audio)], sampling_rate=16000, return_tensors="np")["input_features"][0],
             "labels": list(row.labels)}
            for row in rows
        ]  # fmt: skip
        data_path = Path(scratch) / "data.pickle"
        with open(data_path, "wb") as file:
            pickle.dump((directory, rows, features), file)
        print(f"tiny.en, {len(rows)} synthesized rows, batch {BATCH}, {args.updates} timed updates per run "
              f"(after one untimed), {args.pairs} alternated pairs, one process per run, CPU float32, 2 threads\n")  # fmt: skip
        print("| backend | ours audio-s/s | Seq2SeqTrainer audio-s/s | ours / Trainer throughput |")
        print("| --- | --- | --- | --- |")
        for backend in args.backends:
            result = alternate_measurements(
                lambda backend=backend: run(backend, data_path, args.updates),
                lambda: run("trainer", data_path, args.updates),
                args.pairs,
                warm=False,
            )
            print(
                f"| {backend} | {audio_per_run / result.ours_s:.2f} | {audio_per_run / result.peer_s:.2f} | "
                f"{result.cell()} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
