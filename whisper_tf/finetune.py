"""Fine-tuning in TensorFlow: ``keras.Model.fit`` runs the updates, with Keras's AdamW.

The same update as the other backends (see :mod:`whisper_core.finetune`): micro-batches accumulate
summed token losses on one ``GradientTape`` each and are divided once by the batch's token count;
gradients are clipped to a global norm; ``keras.optimizers.AdamW`` decays matrices only (1-D variables
are excluded) and its rate is set from :func:`whisper_core.finetune.learning_rate` before each update.
``fit`` drives it: a small Keras model (:class:`_Updates`) whose ``train_step`` is this update, a
``tf.data`` pipeline over the run's batches, and a callback that sets the rate and hands each update to
the run (logging, evaluation, checkpoints). It is not
:class:`whisper_tf.training.TFWhisperTrainingMixin`'s ``train_step`` (kept for users' own ``fit``
loops) because that one weights every call's mean alike, and a batch split into micro-batches must
weight them by their tokens to give the other backends' update.

Past one device, ``fit`` runs under a ``tf.distribute`` strategy: ``MultiWorkerMirroredStrategy`` when
``TF_CONFIG`` describes a cluster (one process per worker), ``MirroredStrategy`` when the process sees
more than one GPU, TensorFlow's default strategy otherwise. Each replica receives its share of every
micro-batch's rows (``distribute_datasets_from_function``); the replicas' gradients are summed
(``all_reduce``) to measure and clip the global norm, and each replica hands its clipped share to the
optimizer, which sums the shares across replicas as Keras does, so a replicated run takes the
one-device steps. Only the chief evaluates and writes.

Keras's Adam adds epsilon to ``sqrt(v)`` before the bias correction, PyTorch and optax after it; with
epsilon 1e-8 the updates differ only for gradients near 1e-8 in size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from whisper_core.finetune import FinetuneOptions, learning_rate
from whisper_core.finetune.data import IGNORE_INDEX, micro_batches
from whisper_core.finetune.updates import AfterUpdate, Batch

from .modeling import TFWhisperForConditionalGeneration, summed_cross_entropy

OPTIMIZER_FILE = "optimizer.npz"


class _Updates(keras.Model):
    """A Keras model whose training step is the fine-tuning update, so that ``fit`` runs the updates."""

    def __init__(self, network: keras.Model, update: Callable[[Any], dict[str, tf.Tensor]]) -> None:
        super().__init__()
        self.network, self._update = network, update
        self.built = True

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        return self._update(data)

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        """Nothing to build: the network and optimizer are built before ``fit``. Under a strategy Keras
        would read a batch here to build, taking it from the run (its order would shift) and, under
        ``MultiWorkerMirroredStrategy``, failing to average that batch across the workers."""


class _EachUpdate(keras.callbacks.Callback):
    """Sets the scheduled rate before each update and reports the update to the run after it."""

    def __init__(self, finetuner: Finetuner, after_update: AfterUpdate) -> None:
        super().__init__()
        self.finetuner, self.after_update, self.rate = finetuner, after_update, 0.0

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.rate = self.finetuner._set_rate()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.finetuner.step += 1
        logs = logs or {}
        loss, norm = (np.asarray(logs[name]).item() for name in ("loss", "grad_norm"))
        self.after_update({"loss": loss, "grad_norm": norm, "learning_rate": self.rate})


def _strategy() -> tf.distribute.Strategy:
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _is_chief() -> bool:
    """The first worker of a ``TF_CONFIG`` cluster (or the only process)."""
    task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    return task.get("type", "worker") in ("worker", "chief") and int(task.get("index", 0)) == 0


class Finetuner:
    """Trains a :class:`TFWhisperForConditionalGeneration` in place, update by update."""

    def __init__(
        self,
        model: TFWhisperForConditionalGeneration,
        options: FinetuneOptions,
        total_steps: int,
        strategy: tf.distribute.Strategy | None = None,
    ) -> None:
        """``model`` must have been built under ``strategy``'s scope (:meth:`from_pretrained` does that)."""
        self.model, self.options, self.total_steps, self.step = model, options, total_steps, 0
        self.strategy = strategy or tf.distribute.get_strategy()
        self.is_main = _is_chief()
        keras.utils.set_random_seed(options.seed)
        model.config.apply_spec_augment = options.spec_augment
        if options.freeze_encoder:
            model.freeze_encoder()
        self.variables = list(model.trainable_variables)
        with self.strategy.scope():
            self.optimizer = keras.optimizers.AdamW(
                learning_rate=options.lr, weight_decay=options.weight_decay, beta_1=0.9, beta_2=0.999, epsilon=1e-8
            )
            self.optimizer.exclude_from_weight_decay(var_list=[v for v in self.variables if len(v.shape) <= 1])
            self.optimizer.build(self.variables)
            self._updates = _Updates(model, self._replica_update)
            self._updates.compile(optimizer=self.optimizer, jit_compile=False)
        self._eval = tf.function(lambda features, labels: self._summed_loss(features, labels, False))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, options: FinetuneOptions, total_steps: int) -> Finetuner:
        dtype = "mixed_bfloat16" if options.dtype == "bfloat16" else "float32"
        strategy = _strategy()
        with strategy.scope():
            model = TFWhisperForConditionalGeneration.from_pretrained(directory, dtype=dtype)
        return cls(model, options, total_steps, strategy)

    def _replica_update(self, data: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One replica's part of an update (``fit``'s ``train_step``): its rows of every micro-batch."""
        features, labels, tokens = data  # [micro-batches, rows, ...] and the whole batch's token count
        total = tf.zeros((), tf.float32)
        grads = [tf.zeros(v.shape, v.dtype) for v in self.variables]
        for part in range(self.options.grad_accum):
            with tf.GradientTape() as tape:
                summed, _ = self._summed_loss(features[part], labels[part], True)
                scaled = summed / tokens
            grads = [
                g + (d if d is not None else 0.0)
                for g, d in zip(grads, tape.gradient(scaled, self.variables), strict=True)
            ]
            total += summed
        replicas = tf.distribute.get_replica_context()
        total, summed_grads = replicas.all_reduce("SUM", total), replicas.all_reduce("SUM", grads)
        norm = tf.linalg.global_norm(summed_grads)
        if self.options.max_grad_norm is not None:  # tf.clip_by_global_norm's factor, applied to each share
            limit = tf.constant(self.options.max_grad_norm, norm.dtype)
            grads = [g * (limit / tf.maximum(norm, limit)) for g in grads]
        self.optimizer.apply(grads, self.variables)  # sums the replicas' shares
        # One row per replica: across workers Keras averages the outputs along their first axis.
        return {"loss": tf.reshape(total / tokens, [1]), "grad_norm": tf.reshape(norm, [1])}

    def _summed_loss(self, features: tf.Tensor, labels: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        logits = self.model(features, labels=labels, training=training).logits
        return summed_cross_entropy(logits, labels)

    def fit(self, batches: Iterator[Batch], steps: int, after_update: AfterUpdate) -> None:
        """``steps`` updates by ``keras.Model.fit``, each reported to ``after_update``."""
        if steps <= 0:
            return
        dataset = self.strategy.distribute_datasets_from_function(lambda context: self._shares(batches, context))
        self._updates.fit(
            dataset,
            epochs=1,
            steps_per_epoch=steps,
            shuffle=False,
            verbose=0,
            callbacks=[_EachUpdate(self, after_update)],
        )

    def _shares(self, batches: Iterator[Batch], context: tf.distribute.InputContext) -> tf.data.Dataset:
        """This process's input pipeline: for every batch, one element per local replica, in replica order
        (the order in which the strategy hands a pipeline's elements to its replicas)."""
        replicas = self.strategy.num_replicas_in_sync
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def shares() -> Iterator[tuple[np.ndarray, np.ndarray, np.float32]]:
            for batch in batches:
                parts = micro_batches(batch, self.options.grad_accum)
                tokens = np.float32(max(int((batch["labels"] != IGNORE_INDEX).sum()), 1))
                for replica in range(first, first + local):
                    features = np.stack([part["input_features"][replica::replicas] for part in parts])
                    yield features, np.stack([part["labels"][replica::replicas] for part in parts]), tokens

        config = self.model.config
        signature = (
            tf.TensorSpec(
                [self.options.grad_accum, None, config.num_mel_bins, 2 * config.max_source_positions], tf.float32
            ),
            tf.TensorSpec([self.options.grad_accum, None, None], tf.int32),
            tf.TensorSpec([], tf.float32),
        )
        return tf.data.Dataset.from_generator(shares, output_signature=signature)

    def _set_rate(self) -> float:
        rate = learning_rate(self.step, self.options.lr, self.total_steps, self.options.warmup)
        self.optimizer.learning_rate.assign(rate)
        return rate

    def eval_loss(self, batch: dict[str, np.ndarray]) -> tuple[float, int]:
        summed, count = self._eval(tf.constant(batch["input_features"]), tf.constant(batch["labels"]))
        return float(summed), int(count)

    def inference_model(self) -> Any:
        return self.model

    def save_model(self, directory: str | os.PathLike) -> Path:
        return self.model.save_pretrained(directory)

    def save_optimizer(self, directory: str | os.PathLike) -> None:
        values = {f"v{i}": np.asarray(v) for i, v in enumerate(self.optimizer.variables)}
        np.savez(Path(directory) / OPTIMIZER_FILE, step=np.array(self.step), **values)

    def load_optimizer(self, directory: str | os.PathLike) -> None:
        with np.load(Path(directory) / OPTIMIZER_FILE) as saved:
            for i, variable in enumerate(self.optimizer.variables):
                variable.assign(saved[f"v{i}"])
            self.step = int(saved["step"])
