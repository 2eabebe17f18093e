"""Fine-tuning in JAX: :mod:`whisper_flax.training`'s compiled step and optax's AdamW, one update per batch.

The same update as the other backends (see :mod:`whisper_core.finetune`): ``training.make_optimizer``
builds AdamW on the shared schedule with global-norm clipping and matrices-only decay, and
``training.make_train_step`` accumulates micro-batches as summed token losses over one token count.
Parameters live in the train state between updates and go back to the model for transcription and
saving. Optimizer state is saved with flax's msgpack serialization.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from whisper_core.fileio import atomic_path
from whisper_core.finetune import FinetuneOptions

from . import training
from .modeling import FlaxWhisperForConditionalGeneration

OPTIMIZER_FILE = "optimizer.msgpack"


class Finetuner:
    """Trains a :class:`FlaxWhisperForConditionalGeneration`; ``state.params`` are the live parameters."""

    def __init__(self, model: FlaxWhisperForConditionalGeneration, options: FinetuneOptions, total_steps: int) -> None:
        self.model, self.options, self.total_steps = model, options, total_steps
        model.config.apply_spec_augment = options.spec_augment
        optimizer = training.make_optimizer(
            options.lr,
            total_steps,
            options.warmup,
            weight_decay=options.weight_decay,
            max_grad_norm=options.max_grad_norm,
            freeze_encoder=options.freeze_encoder,
        )
        self.state = training.create_train_state(model, optimizer, seed=options.seed)
        self._train_step = training.make_train_step(model, options.grad_accum)
        self._eval = jax.jit(lambda params, batch: training._summed_loss(model, params, batch, None, False))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, options: FinetuneOptions, total_steps: int) -> Finetuner:
        dtype = jnp.bfloat16 if options.dtype == "bfloat16" else jnp.float32
        model = FlaxWhisperForConditionalGeneration.from_pretrained(directory, dtype=dtype, param_dtype=jnp.float32)
        return cls(model, options, total_steps)

    @property
    def step(self) -> int:
        return int(self.state.step)

    def train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One update on ``batch``; the loss is the batch's before the update."""
        rate = float(training.make_schedule(self.options.lr, self.total_steps, self.options.warmup)(self.step))
        self.state, metrics = self._train_step(self.state, dict(batch))
        return {"loss": float(metrics["loss"]), "grad_norm": float(metrics["grad_norm"]), "learning_rate": rate}

    def eval_loss(self, batch: dict[str, np.ndarray]) -> tuple[float, int]:
        summed, count = self._eval(self.state.params, dict(batch))
        return float(summed), int(count)

    def inference_model(self) -> Any:
        """The model holding the state's current parameters."""
        self.model.params = self.state.params
        return self.model

    def save_model(self, directory: str | os.PathLike) -> Path:
        return self.inference_model().save_pretrained(directory)

    def save_optimizer(self, directory: str | os.PathLike) -> None:
        state = {"opt_state": self.state.opt_state, "step": self.state.step, "dropout_rng": self.state.dropout_rng}
        with atomic_path(Path(directory) / OPTIMIZER_FILE) as temp_path:
            temp_path.write_bytes(serialization.to_bytes(jax.device_get(state)))

    def load_optimizer(self, directory: str | os.PathLike) -> None:
        template = {"opt_state": self.state.opt_state, "step": self.state.step, "dropout_rng": self.state.dropout_rng}
        restored = serialization.from_bytes(template, (Path(directory) / OPTIMIZER_FILE).read_bytes())
        self.state = self.state.replace(
            opt_state=jax.tree.map(jnp.asarray, restored["opt_state"]),
            step=jnp.asarray(restored["step"]),
            dropout_rng=jnp.asarray(restored["dropout_rng"]),
        )
