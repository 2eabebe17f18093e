"""``whisper-mb finetune``: one loop that fine-tunes with any backend, evaluates, checkpoints and resumes.

The corpus is read and checked once (:mod:`whisper_core.finetune.data`; bad rows are counted and
reported, never fatal), batches are drawn in a seeded, length-sorted order, and the backend's
``Finetuner`` (``whisper_pt.finetune``, ``whisper_tf.finetune``, ``whisper_flax.finetune``) takes each
update natively. Every ``eval_every`` updates (and before the first and after the last, when there is
eval data) the loop measures the eval loss and the word error rate of greedy transcription with the
live model. Every ``save_every`` updates it writes ``OUTPUT/checkpoint-N``: the weights as a canonical
checkpoint, the optimizer state, and ``trainer_state.json`` (update count, where the batch order
stands, the history); the directory is built aside and renamed into place, and the two newest are
kept. ``resume=True`` continues from the newest, drawing exactly the batches an uninterrupted run
would have. The finished model is written to ``OUTPUT`` as a canonical checkpoint with its tokenizer
and feature extractor, which every backend loads and ``whisper-mb convert`` takes to any runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weights_bridge.fetching import resolve_model
from whisper_core.config import WhisperConfig
from whisper_core.feature_extraction import WhisperFeatureExtractor
from whisper_core.fileio import read_json, write_json
from whisper_core.finetune import (
    BatchOrder,
    FinetuneOptions,
    Prepared,
    SkipReport,
    example_audio,
    from_dataset,
    prepare,
    read_corpus,
)
from whisper_core.finetune.data import make_batch
from whisper_core.finetune.metrics import word_error_rate
from whisper_core.tokenizer import WhisperTokenizer
from whisper_core.transcribe import TranscribeOptions, Transcriber

from .registry import backend as backend_spec

STATE_FILE = "trainer_state.json"
CHECKPOINT_PREFIX = "checkpoint-"
KEEP_CHECKPOINTS = 2


@dataclass
class FinetuneResult:
    """What a run did: where the model is, the per-update log, the evaluations and the rows it skipped."""

    output: Path
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)
    skipped: dict[str, Any] = field(default_factory=dict)
    is_main: bool = True  # False on the other ranks of a distributed run, which write nothing


def _prepared(
    data: str | os.PathLike | Iterable[Any],
    tokenizer: WhisperTokenizer,
    config: WhisperConfig,
    options: FinetuneOptions,
) -> tuple[list[Prepared], SkipReport]:
    report = SkipReport()
    # a folder or manifest; else Example rows, or a datasets.Dataset (any iterable of dicts with an audio column)
    examples = read_corpus(data, report) if isinstance(data, str | os.PathLike) else from_dataset(data)
    return prepare(
        examples, tokenizer, config.max_target_positions, language=options.language, task=options.task, report=report
    )


class _Progress:
    """A progress bar on a terminal (one line redrawn: updates, loss, rate, audio-seconds per second);
    elsewhere (a log file, a CI job) one line per update."""

    WIDTH = 24

    def __init__(self, total: int, log: Callable[[str], None], live: bool) -> None:
        self.total, self.log, self.live, self.stream = total, log, live, sys.stderr

    def update(self, step: int, metrics: dict[str, float]) -> None:
        text = (
            f"update {step}/{self.total}: loss {metrics['loss']:.4f}, lr {metrics['learning_rate']:.3g}, "
            f"{metrics['audio_seconds_per_second']:.1f} audio-s/s"
        )
        if not self.live:
            self.log(text)
            return
        done = self.WIDTH * step // max(self.total, 1)
        self.stream.write(f"\r[{'#' * done}{'.' * (self.WIDTH - done)}] {text}" + ("\n" if step == self.total else ""))
        self.stream.flush()


def latest_checkpoint(output: Path) -> Path | None:
    """The newest ``checkpoint-N`` under ``output`` (None when there is none)."""
    found = [
        p for p in output.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return max(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


class _Evaluator:
    """Eval loss and greedy-transcription WER of the live model on a prepared set."""

    def __init__(
        self,
        backend: str,
        rows: list[Prepared],
        tokenizer: WhisperTokenizer,
        extractor: WhisperFeatureExtractor,
        options: FinetuneOptions,
    ) -> None:
        self.backend, self.rows, self.tokenizer, self.extractor, self.options = (
            backend,
            rows,
            tokenizer,
            extractor,
            options,
        )

    def __call__(self, trainer: Any) -> dict[str, float]:
        total, tokens = 0.0, 0
        size = self.options.batch_size
        for start in range(0, len(self.rows), size):
            summed, count = trainer.eval_loss(make_batch(self.rows[start : start + size], self.extractor, size))
            total, tokens = total + summed, tokens + count
        transcriber = Transcriber(
            backend_spec(self.backend).adapter(trainer.inference_model()), self.tokenizer, self.extractor
        )
        options = TranscribeOptions(
            language=self.options.language, task=self.options.task, temperature=(0.0,), condition_on_prev_tokens=False
        )
        audios = [example_audio(row.example.audio) for row in self.rows]
        texts = [result.text for result in transcriber.transcribe(audios, options)]
        language = self.options.language or next(
            (row.example.language for row in self.rows if row.example.language), None
        )
        wer = word_error_rate([row.example.text for row in self.rows], texts, language)
        return {"eval_loss": total / max(tokens, 1), "wer": wer}


def _save_checkpoint(output: Path, trainer: Any, order_state: dict[str, int], state: dict[str, Any]) -> Path:
    """``OUTPUT/checkpoint-N``, built aside and renamed; older ones beyond the newest two are removed."""
    final = output / f"{CHECKPOINT_PREFIX}{trainer.step}"
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=output))
    try:
        trainer.save_model(staging)
        trainer.save_optimizer(staging)
        write_json(staging / STATE_FILE, {**state, "step": trainer.step, "order": order_state})
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    kept = sorted(output.glob(f"{CHECKPOINT_PREFIX}*"), key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))
    for old in kept[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


class _Updates:
    """The run's side of the backend's ``fit``: it draws the batches, and after each update logs it,
    evaluates and checkpoints. A backend may draw batches ahead of its updates (Keras's input pipeline
    does), so each drawn batch's audio length and batch-order state wait in a queue for their update."""

    def __init__(
        self,
        backend: str,
        rows: list[Prepared],
        extractor: WhisperFeatureExtractor,
        options: FinetuneOptions,
        order: BatchOrder,
        trainer: Any,
        output: Path,
        evaluate: _Evaluator | None,
        log: Callable[[str], None],
        history: list[dict[str, float]],
        evaluations: list[dict[str, float]],
    ) -> None:
        self.backend, self.rows, self.extractor, self.options, self.order = backend, rows, extractor, options, order
        self.trainer, self.output, self.evaluate, self.log = trainer, output, evaluate, log
        self.history, self.evaluations = history, evaluations
        self.drawn: deque[tuple[float, dict[str, int]]] = deque()
        self.total = options.total_steps(len(rows))
        self.progress = _Progress(self.total, log, live=trainer.is_main and sys.stderr.isatty())
        self.clock = time.perf_counter()

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        while True:
            items = [self.rows[i] for i in self.order.next()]
            self.drawn.append((sum(item.seconds for item in items), self.order.state()))
            yield make_batch(items, self.extractor, self.options.rows_per_update)

    def after_update(self, metrics: dict[str, float]) -> None:
        audio, order_state = self.drawn.popleft()
        step, options = self.trainer.step, self.options
        speed = audio / max(time.perf_counter() - self.clock, 1e-9)
        self.history.append({"step": step, **metrics, "audio_seconds_per_second": speed})
        self.progress.update(step, self.history[-1])
        if self.evaluate is not None and (
            (options.eval_every and step % options.eval_every == 0) or step == self.total
        ):
            self.evaluations.append({"step": step, **self.evaluate(self.trainer)})
            latest = self.evaluations[-1]
            self.log(f"update {step}: eval loss {latest['eval_loss']:.4f}, WER {latest['wer']:.3f}")
        if options.save_every and step % options.save_every == 0 and self.trainer.is_main:
            state = {"history": self.history, "evaluations": self.evaluations, "options": options.to_dict(),
                     "backend": self.backend}  # fmt: skip
            self.log(f"saved {_save_checkpoint(self.output, self.trainer, order_state, state)}")
        self.clock = time.perf_counter()  # evaluation and saving are not training time


def finetune(
    backend: str,
    model: str | os.PathLike,
    train: str | os.PathLike | Iterable[Any],
    output: str | os.PathLike,
    *,
    eval_data: str | os.PathLike | Iterable[Any] | None = None,
    options: FinetuneOptions = FinetuneOptions(),  # noqa: B008 (frozen: shared safely)
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` (a name :func:`weights_bridge.resolve_model` knows, or a checkpoint directory)
    with ``backend`` on ``train`` (an audio folder, a JSONL manifest, :class:`Example` rows or a
    ``datasets.Dataset`` with an audio column), writing to
    ``output``; see the module docstring."""
    log = log or (lambda line: print(line, file=sys.stderr))
    spec = backend_spec(backend)
    directory = resolve_model(str(model))
    config = WhisperConfig.from_pretrained(directory)
    tokenizer = WhisperTokenizer.from_pretrained(directory)
    extractor = WhisperFeatureExtractor.for_checkpoint(str(directory))
    rows, train_report = _prepared(train, tokenizer, config, options)
    eval_rows, eval_report = (
        _prepared(eval_data, tokenizer, config, options) if eval_data is not None else ([], SkipReport())
    )
    log(f"train: {len(rows)} rows ({train_report.summary()}); eval: {len(eval_rows)} rows ({eval_report.summary()})")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    total = options.total_steps(len(rows))
    order = BatchOrder([row.seconds for row in rows], options.rows_per_update, options.seed)
    finetuner = spec.finetuner()
    checkpoint = latest_checkpoint(output) if resume else None
    trainer = finetuner.from_pretrained(checkpoint or directory, options, total)
    if not trainer.is_main:  # other ranks of a distributed run train; the first one reports and writes
        log = lambda line: None  # noqa: E731
    history: list[dict[str, float]] = []
    evaluations: list[dict[str, float]] = []
    if checkpoint is not None:
        trainer.load_optimizer(checkpoint)
        saved = read_json(checkpoint / STATE_FILE)
        order.epoch, order.position = saved["order"]["epoch"], saved["order"]["position"]
        history, evaluations = saved["history"], saved["evaluations"]
        log(f"resumed from {checkpoint} at update {trainer.step} of {total}")
    evaluate = _Evaluator(backend, eval_rows, tokenizer, extractor, options) if eval_rows and trainer.is_main else None
    if evaluate is not None and trainer.step == 0:
        evaluations.append({"step": 0, **evaluate(trainer)})
        log(f"update 0: eval loss {evaluations[-1]['eval_loss']:.4f}, WER {evaluations[-1]['wer']:.3f}")
    run = _Updates(backend, rows, extractor, options, order, trainer, output, evaluate, log, history, evaluations)
    trainer.fit(run.batches(), total - trainer.step, run.after_update)
    skipped = {"train": train_report.to_dict(), "eval": eval_report.to_dict()}
    if not trainer.is_main:
        return FinetuneResult(output, trainer.step, history, evaluations, skipped, is_main=False)
    trainer.save_model(output)
    tokenizer.save_pretrained(output)
    extractor.save_pretrained(output)
    write_json(output / "finetune_report.json", {"history": history, "evaluations": evaluations, "skipped": skipped,
                                                 "options": options.to_dict(), "backend": backend})  # fmt: skip
    log(f"done: {output}; train {train_report.summary()}; eval {eval_report.summary()}")
    return FinetuneResult(output, trainer.step, history, evaluations, skipped)


# -- command line --------------------------------------------------------------------------------------
def _run(args: argparse.Namespace) -> int:
    options = FinetuneOptions(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
        lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay, freeze_encoder=args.freeze_encoder,
        spec_augment=args.spec_augment, dtype=args.dtype, eval_every=args.eval_every, save_every=args.save_every,
        seed=args.seed, language=args.language, task=args.task,
    )  # fmt: skip
    result = finetune(
        args.backend, args.model, args.train, args.output, eval_data=args.eval, options=options, resume=args.resume
    )
    if not result.is_main:
        return 0
    print(json.dumps({"output": str(result.output), "steps": result.steps, "evaluations": result.evaluations,
                      "skipped": {k: v["skipped"] for k, v in result.skipped.items()}}))  # fmt: skip
    return 0


def add_finetune(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("finetune", help="fine-tune a model on an audio folder or JSONL manifest")
    parser.add_argument("--backend", choices=("pt", "tf", "flax"), default="pt")
    parser.add_argument("--model", default="tiny.en", help="tiny.en, base, or a checkpoint directory")
    parser.add_argument("--train", required=True, help="an audio folder (metadata.csv/.jsonl) or a .jsonl manifest")
    parser.add_argument("--eval", help="held-out data in the same layouts: eval loss and WER")
    parser.add_argument("--output", required=True, help="the directory for checkpoints and the finished model")
    parser.add_argument("--language", help="language of rows that name none (multilingual models)")
    parser.add_argument("--task", choices=("transcribe", "translate"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, help="updates to run (wins over --epochs)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per update")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--warmup", type=int, default=0, help="updates of linear warm-up")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--freeze-encoder", action="store_true")
    parser.add_argument("--spec-augment", action="store_true", help="SpecAugment time and feature masks")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--eval-every", type=int, help="updates between evaluations")
    parser.add_argument("--save-every", type=int, help="updates between checkpoints")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=_run)
