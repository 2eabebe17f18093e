"""Fine-tuning in TensorFlow: a compiled update step over the Keras model's variables, Keras's AdamW.

The same update as the other backends (see :mod:`whisper_core.finetune`): micro-batches accumulate
summed token losses on one ``GradientTape`` each and are divided once by the batch's token count;
gradients are clipped to a global norm; ``keras.optimizers.AdamW`` decays matrices only (1-D variables
are excluded) and its rate is set from :func:`whisper_core.finetune.learning_rate` before each update.
``model.fit`` (:class:`whisper_tf.training.TFWhisperTrainingMixin`) stays available for users' own
loops; this step differs only in weighting micro-batches by their tokens, which ``fit``'s gradient
accumulation (a mean of per-call means) does not.

Past one device the update runs under a ``tf.distribute`` strategy: ``MultiWorkerMirroredStrategy``
when ``TF_CONFIG`` describes a cluster (one process per worker), ``MirroredStrategy`` when the process
sees more than one GPU, TensorFlow's default strategy otherwise. Variables are mirrored; each replica
takes its share of every micro-batch's rows, the summed gradients are reduced across replicas, then
clipped and applied once, so a replicated run takes the one-device steps. Only the chief evaluates and
writes.

Keras's Adam adds epsilon to ``sqrt(v)`` before the bias correction, PyTorch and optax after it; with
epsilon 1e-8 the updates differ only for gradients near 1e-8 in size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from whisper_core.finetune import FinetuneOptions, learning_rate
from whisper_core.finetune.data import IGNORE_INDEX, micro_batches

from .modeling import TFWhisperForConditionalGeneration, summed_cross_entropy

OPTIMIZER_FILE = "optimizer.npz"


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
        self._update = tf.function(self._update_step, reduce_retracing=True)
        self._eval = tf.function(lambda features, labels: self._summed_loss(features, labels, False))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, options: FinetuneOptions, total_steps: int) -> Finetuner:
        dtype = "mixed_bfloat16" if options.dtype == "bfloat16" else "float32"
        strategy = _strategy()
        with strategy.scope():
            model = TFWhisperForConditionalGeneration.from_pretrained(directory, dtype=dtype)
        return cls(model, options, total_steps, strategy)

    def _replica_step(self, parts: list, tokens: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One replica's summed loss and gradients over its rows of every micro-batch."""
        total = tf.zeros((), tf.float32)
        grads = [tf.zeros(v.shape, v.dtype) for v in self.variables]
        for features, labels in parts:
            with tf.GradientTape() as tape:
                summed, _ = self._summed_loss(features, labels, True)
                scaled = summed / tokens
            grads = [
                g + (d if d is not None else 0.0)
                for g, d in zip(grads, tape.gradient(scaled, self.variables), strict=True)
            ]
            total += summed
        return total, grads

    def _update_step(self, parts: list, tokens: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        total, grads = self.strategy.run(self._replica_step, args=(parts, tokens))
        total = self.strategy.reduce("SUM", total, axis=None)
        grads = [self.strategy.reduce("SUM", grad, axis=None) for grad in grads]
        norm = tf.linalg.global_norm(grads)
        if self.options.max_grad_norm is not None:
            grads, _ = tf.clip_by_global_norm(grads, self.options.max_grad_norm, use_norm=norm)
        self.optimizer.apply(grads, self.variables)
        return total / tokens, norm

    def _summed_loss(self, features: tf.Tensor, labels: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        logits = self.model(features, labels=labels, training=training).logits
        return summed_cross_entropy(logits, labels)

    def train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One update on ``batch`` (``grad_accum`` micro-batches); the loss is the batch's before the update."""
        rate = learning_rate(self.step, self.options.lr, self.total_steps, self.options.warmup)
        self.optimizer.learning_rate.assign(rate)
        replicas = self.strategy.num_replicas_in_sync

        def share(values: np.ndarray) -> Any:  # each replica's rows
            return self.strategy.experimental_distribute_values_from_function(
                lambda context: tf.constant(values[context.replica_id_in_sync_group :: replicas])
            )

        parts = [
            (share(p["input_features"]), share(p["labels"])) for p in micro_batches(batch, self.options.grad_accum)
        ]
        tokens = tf.constant(max(int((batch["labels"] != IGNORE_INDEX).sum()), 1), tf.float32)
        loss, norm = self._update(parts, tokens)
        self.step += 1
        return {"loss": float(loss), "grad_norm": float(norm), "learning_rate": rate}

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
