"""Fine-tuning in JAX: :mod:`whisper_flax.training`'s compiled step and optax's AdamW, one update per batch.

The same update as the other backends (see :mod:`whisper_core.finetune`): ``training.make_optimizer``
builds AdamW on the shared schedule with global-norm clipping and matrices-only decay, and
``training.make_train_step`` accumulates micro-batches as summed token losses over one token count.
Parameters live in the train state between updates and go back to the model for transcription and
saving. Optimizer state is saved with flax's msgpack serialization.

With more than one device in the process (accelerators, or CPU devices from
``XLA_FLAGS=--xla_force_host_platform_device_count=N``), the run is data-parallel over a ("data",
"model") mesh: the state is placed by :func:`whisper_flax.training.state_shardings`, every batch is
split over "data", and XLA's partitioner sums the gradients, so the losses are one device's. Across
processes, ``jax.distributed.initialize`` joins them when ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` are set (CPU processes exchange through gloo), and the mesh
spans every process's devices; the state stays replicated, so the first process evaluates and saves
from its own copy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from whisper_core.fileio import atomic_path
from whisper_core.finetune import FinetuneOptions
from whisper_core.finetune.updates import AfterUpdate, Batch, step_by_step

from . import training
from .modeling import FlaxWhisperForConditionalGeneration

OPTIMIZER_FILE = "optimizer.msgpack"


def _join_processes() -> None:
    """``jax.distributed.initialize`` from the environment, once, when a multi-process run is described."""
    if int(os.environ.get("JAX_NUM_PROCESSES", "1")) > 1 and not jax.distributed.is_initialized():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices only; before any JAX call
        jax.distributed.initialize(
            os.environ["JAX_COORDINATOR_ADDRESS"],
            int(os.environ["JAX_NUM_PROCESSES"]),
            int(os.environ["JAX_PROCESS_ID"]),
        )


def _place_like(value: Any, like: Any) -> Any:
    """``value`` laid out as the array ``like`` (its sharding, over every process of the mesh)."""
    if not isinstance(like, jax.Array):
        return value
    value = np.asarray(value)
    return jax.make_array_from_callback(like.shape, like.sharding, lambda index: value[index])


def _local(tree: Any) -> Any:
    """This process's copy of replicated arrays (a multi-process array is not addressable whole)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, tree)


class Finetuner:
    """Trains a :class:`FlaxWhisperForConditionalGeneration`; ``state.params`` are the live parameters."""

    def __init__(self, model: FlaxWhisperForConditionalGeneration, options: FinetuneOptions, total_steps: int) -> None:
        _join_processes()
        self.model, self.options, self.total_steps = model, options, total_steps
        self.is_main = jax.process_index() == 0
        model.config.apply_spec_augment = options.spec_augment
        optimizer = training.make_optimizer(
            options.lr,
            total_steps,
            options.warmup,
            weight_decay=options.weight_decay,
            max_grad_norm=options.max_grad_norm,
            freeze_encoder=options.freeze_encoder,
        )
        self.mesh = training.make_mesh() if jax.device_count() > 1 else None
        self.state = training.create_train_state(model, optimizer, seed=options.seed, mesh=self.mesh)
        self._train_step = training.make_train_step(model, options.grad_accum, self.mesh)
        self._eval = jax.jit(lambda params, batch: training._summed_loss(model, params, batch, None, False))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, options: FinetuneOptions, total_steps: int) -> Finetuner:
        _join_processes()  # before loading touches a device
        dtype = jnp.bfloat16 if options.dtype == "bfloat16" else jnp.float32
        model = FlaxWhisperForConditionalGeneration.from_pretrained(directory, dtype=dtype, param_dtype=jnp.float32)
        return cls(model, options, total_steps)

    @property
    def step(self) -> int:
        return int(_local(self.state.step))

    def train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One update on ``batch``; the loss is the batch's before the update."""
        rate = float(training.make_schedule(self.options.lr, self.total_steps, self.options.warmup)(self.step))
        batch = training.shard_batch(batch, self.mesh) if self.mesh is not None else dict(batch)
        self.state, metrics = self._train_step(self.state, batch)
        metrics = _local(metrics)
        return {"loss": float(metrics["loss"]), "grad_norm": float(metrics["grad_norm"]), "learning_rate": rate}

    def fit(self, batches: Iterator[Batch], steps: int, after_update: AfterUpdate) -> None:
        """``steps`` updates in this backend's own loop, each reported to ``after_update``."""
        step_by_step(self.train_step, batches, steps, after_update)

    def eval_loss(self, batch: dict[str, np.ndarray]) -> tuple[float, int]:
        summed, count = self._eval(self.inference_model().params, dict(batch))
        return float(summed), int(count)

    def inference_model(self) -> Any:
        """The model holding (this process's copy of) the state's current parameters."""
        self.model.params = self.state.params if jax.process_count() == 1 else _local(self.state.params)
        return self.model

    def save_model(self, directory: str | os.PathLike) -> Path:
        return self.inference_model().save_pretrained(directory)

    def save_optimizer(self, directory: str | os.PathLike) -> None:
        state = {"opt_state": self.state.opt_state, "step": self.state.step, "dropout_rng": self.state.dropout_rng}
        with atomic_path(Path(directory) / OPTIMIZER_FILE) as temp_path:
            temp_path.write_bytes(serialization.to_bytes(_local(state)))

    def load_optimizer(self, directory: str | os.PathLike) -> None:
        template = {"opt_state": self.state.opt_state, "step": self.state.step, "dropout_rng": self.state.dropout_rng}
        restored = serialization.from_bytes(_local(template), (Path(directory) / OPTIMIZER_FILE).read_bytes())
        placed = jax.tree.map(_place_like, restored, template)  # where the live state's arrays are
        self.state = self.state.replace(**placed)
