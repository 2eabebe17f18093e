"""Fine-tuning the Flax models with optax: one compiled train step and an eval step, on one device or a Mesh.

Loss: the token-mean cross-entropy over labels != -100, with the labels shifted right behind
``decoder_start_token_id`` as decoder inputs (the model's own loss, as whisper_pt's). Training runs the
model with ``train=True``, so dropout and, when ``config.apply_spec_augment``, SpecAugment draw from the
state's key.

Gradient accumulation happens inside the step: the batch is cut into micro-batches, their token losses
and gradients are summed, and one division by the batch's token count follows. So k micro-batches
update exactly as the whole batch would (``optax.MultiSteps`` averages per-call means, which differs
when the calls hold different numbers of tokens). The sum is a loop unrolled into the program, not a
``lax.scan``: XLA's CPU backend runs a convolution's gradient inside a loop body about 100x slower than
outside one (measured with jax 0.10: 15 s against 0.09 s for the encoder's first conv at batch 8), which
made every update 4-5x slower.

Sharding: a ``Mesh`` with axes ("data", "model"). Batches split on "data"; every state leaf (parameters
and optimizer moments alike) with at least ``min_shard_size`` elements splits along its largest dimension
that the "model" axis divides, the rest is replicated. One rule places the state and constrains the step's
output, and XLA's partitioner inserts the collectives, so a mesh gives one device's loss up to rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from whisper_core.finetune import data as finetune_data

from .modeling import summed_cross_entropy

Params = Any
# "input_features" [b, num_mel_bins, frames], "labels" [b, T] (-100 = no loss), optionally the
# processor's frame "attention_mask" [b, frames] (1 on real audio; SpecAugment then spares the padding).
Batch = Mapping[str, Any]
Metrics = dict[str, jax.Array]
IGNORE_INDEX = finetune_data.IGNORE_INDEX
MIN_SHARD_SIZE = 2**18  # smaller leaves are cheaper replicated than gathered


class TrainState(train_state.TrainState):
    """flax's ``TrainState`` (step, params, tx, opt_state) plus the key dropout and SpecAugment draw from."""

    dropout_rng: jax.Array


def make_schedule(learning_rate: float, total_steps: int, warmup_steps: int = 0) -> optax.Schedule:
    """Linear warm-up to ``learning_rate`` (reached at update ``warmup_steps - 1``; the first update already
    moves), then linear decay to 0 at ``total_steps``: transformers' "linear" schedule without its
    zero-rate first step."""
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) < total_steps ({total_steps})")

    def schedule(count: jax.Array) -> jax.Array:
        count = jnp.asarray(count, jnp.float32)
        rising = (count + 1) / max(warmup_steps, 1)
        falling = (total_steps - count) / (total_steps - warmup_steps)
        return learning_rate * jnp.clip(jnp.minimum(rising, falling), 0.0, 1.0)

    return schedule


def decay_mask(params: Params) -> Params:
    """Weight decay on matrices (kernels, embeddings) only, not on biases and LayerNorm scales (1-D)."""
    return jax.tree.map(lambda leaf: leaf.ndim > 1, params)


def encoder_labels(params: Params) -> Params:
    """``"frozen"`` for every leaf under an ``encoder`` module, ``"trained"`` for the rest."""

    def label(path: tuple, leaf: Any) -> str:
        return "frozen" if any(getattr(key, "key", None) == "encoder" for key in path) else "trained"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    freeze_encoder: bool = False,
) -> optax.GradientTransformation:
    """AdamW on :func:`make_schedule`, decay masked by :func:`decay_mask`, after global-norm clipping
    (transformers' Trainer defaults; ``max_grad_norm=None`` turns clipping off).

    ``freeze_encoder=True`` is JAX's form of whisper_pt's ``model.freeze_encoder()``: params are values,
    not modules, so the optimizer leaves the encoder's unchanged, keeps no Adam state for them, and
    clips the norm of the other gradients only (as PyTorch, which computes no encoder gradients).
    """
    adamw = optax.adamw(
        make_schedule(learning_rate, total_steps, warmup_steps), b1, b2, eps, weight_decay=weight_decay, mask=decay_mask
    )
    trained = adamw if max_grad_norm is None else optax.chain(optax.clip_by_global_norm(max_grad_norm), adamw)
    if not freeze_encoder:
        return trained
    return optax.multi_transform({"trained": trained, "frozen": optax.set_to_zero()}, encoder_labels)


def pad_labels(
    token_ids: Sequence[Sequence[int]], decoder_start_token_id: int, length: int | None = None
) -> np.ndarray:
    """Tokenised texts -> labels ``[b, length]`` padded with -100.

    A leading ``decoder_start_token_id`` (the tokenizer writes ``<|startoftranscript|>`` first) is dropped:
    the model puts it back when it shifts the labels right, and it must not be predicted.
    """
    rows = [list(ids[1:] if ids and ids[0] == decoder_start_token_id else ids) for ids in token_ids]
    return finetune_data.pad_labels(rows, length)


def make_mesh(model_parallel: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ("data", "model") mesh over ``devices`` (default all): ``model_parallel`` devices share each
    parameter, the rest split the batch."""
    devices = list(devices if devices is not None else jax.devices())
    if len(devices) % model_parallel:
        raise ValueError(f"{len(devices)} devices do not split into groups of model_parallel={model_parallel}")
    grid = np.array(devices).reshape(len(devices) // model_parallel, model_parallel)
    return Mesh(grid, ("data", "model"))


def _leaf_spec(shape: tuple[int, ...], model_size: int, min_shard_size: int) -> P:
    if len(shape) < 2 or model_size == 1 or int(np.prod(shape)) < min_shard_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):  # largest dimension first
        if shape[dim] % model_size == 0:
            return P(*("model" if d == dim else None for d in range(len(shape))))
    return P()


def state_shardings(tree: Any, mesh: Mesh, min_shard_size: int = MIN_SHARD_SIZE) -> Any:
    """A ``NamedSharding`` per leaf of ``tree`` (params, a TrainState, shapes from ``jax.eval_shape``)."""
    model_size = mesh.shape["model"]
    return jax.tree.map(lambda leaf: NamedSharding(mesh, _leaf_spec(leaf.shape, model_size, min_shard_size)), tree)


def shard_batch(batch: Batch, mesh: Mesh) -> dict[str, jax.Array]:
    """Put every array of ``batch`` on ``mesh``, split along the batch axis over "data". Every process of
    a multi-process run passes the same whole batch and places the rows its own devices hold."""
    sharding = NamedSharding(mesh, P("data"))

    def place(value: Any) -> jax.Array:
        value = np.asarray(value)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return {key: place(value) for key, value in batch.items()}


def create_train_state(
    model: Any,
    optimizer: optax.GradientTransformation,
    params: Params | None = None,
    seed: int = 0,
    mesh: Mesh | None = None,
    min_shard_size: int = MIN_SHARD_SIZE,
) -> TrainState:
    """A fresh state for a copy of ``params`` (default the model's: the train step donates the state, and
    the caller's arrays must outlive it); with a ``mesh`` the parameters are placed by
    :func:`state_shardings` and the optimizer state is created already sharded (never whole on one device)."""
    params = params if params is not None else model.params

    def create(params: Params) -> TrainState:
        return TrainState.create(
            apply_fn=model.__call__,
            params=jax.tree.map(jnp.copy, params),
            tx=optimizer,
            dropout_rng=jax.random.PRNGKey(seed),
        )

    if mesh is None:
        return jax.jit(create)(params)
    params = jax.device_put(params, state_shardings(params, mesh, min_shard_size))
    shardings = state_shardings(jax.eval_shape(create, params), mesh, min_shard_size)
    return jax.jit(create, out_shardings=shardings)(params)


def _summed_loss(
    model: Any, params: Params, batch: Batch, dropout_rng: jax.Array | None, train: bool
) -> tuple[jax.Array, jax.Array]:
    """(summed token cross-entropy, labelled-token count) of ``batch``; the model shifts the labels right."""
    labels = batch["labels"]
    frames = batch.get("attention_mask")  # real audio frames: SpecAugment masks only those
    out = model(
        batch["input_features"],
        attention_mask=frames,
        labels=labels,
        params=params,
        train=train,
        dropout_rng=dropout_rng,
    )
    return summed_cross_entropy(out.logits, labels)


def loss_and_grads(
    model: Any,
    params: Params,
    batch: Batch,
    dropout_rng: jax.Array | None = None,
    train: bool = True,
    accumulation_steps: int = 1,
    mesh: Mesh | None = None,
) -> tuple[jax.Array, Params]:
    """Token-mean loss of ``batch`` and its gradients, summed over ``accumulation_steps`` micro-batches.

    Micro-batch ``j`` holds rows ``j, j + k, j + 2k, ...``: each device's block of a "data"-sharded batch
    then feeds every micro-batch without moving. Micro-batch ``j`` draws from ``fold_in(dropout_rng, j)``.
    """
    size = batch["labels"].shape[0]
    if size % accumulation_steps:
        raise ValueError(f"batch size {size} is not a multiple of accumulation_steps={accumulation_steps}")
    micro_size = size // accumulation_steps
    if mesh is not None and micro_size % mesh.shape["data"]:
        raise ValueError(f"micro-batch size {micro_size} does not split over {mesh.shape['data']} data shards")

    def split(x: Any) -> jax.Array:
        x = jnp.asarray(x)  # [b, ...] -> [k, b / k, ...]
        return x.reshape(micro_size, accumulation_steps, *x.shape[1:]).swapaxes(0, 1)

    micro_batches = {key: split(batch[key]) for key in ("input_features", "labels", "attention_mask") if key in batch}
    if mesh is not None:
        micro_batches = jax.lax.with_sharding_constraint(micro_batches, NamedSharding(mesh, P(None, "data")))
    grad_fn = jax.value_and_grad(lambda p, b, r: _summed_loss(model, p, b, r, train), has_aux=True)
    total, tokens, grads = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32), None
    for index in range(accumulation_steps):  # unrolled, not a scan: see the module docstring
        rng = None if dropout_rng is None else jax.random.fold_in(dropout_rng, index)
        micro_batch = {key: value[index] for key, value in micro_batches.items()}
        (loss, count), micro_grads = grad_fn(params, micro_batch, rng)
        total, tokens = total + loss, tokens + count
        grads = micro_grads if grads is None else jax.tree.map(jnp.add, grads, micro_grads)
    tokens = jnp.maximum(tokens, 1).astype(jnp.float32)  # a batch without labels gives 0, not NaN
    return total / tokens, jax.tree.map(lambda g: g / tokens, grads)


def make_train_step(
    model: Any, accumulation_steps: int = 1, mesh: Mesh | None = None, min_shard_size: int = MIN_SHARD_SIZE
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """A jitted ``step(state, batch) -> (state, {"loss", "grad_norm"})`` (the state is donated).

    ``loss`` is the batch's loss before the update. With a ``mesh``, pass the state from
    :func:`create_train_state` and batches from :func:`shard_batch`; the new state keeps their layout.
    """

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        dropout_rng, next_rng = jax.random.split(state.dropout_rng)
        loss, grads = loss_and_grads(model, state.params, batch, dropout_rng, True, accumulation_steps, mesh)
        state = state.apply_gradients(grads=grads, dropout_rng=next_rng)
        if mesh is not None:
            state = jax.lax.with_sharding_constraint(state, state_shardings(state, mesh, min_shard_size))
        return state, {"loss": loss, "grad_norm": optax.global_norm(grads)}

    return jax.jit(step, donate_argnums=0)


def make_eval_step(model: Any) -> Callable[[Params, Batch], Metrics]:
    """A jitted ``step(params, batch) -> {"loss", "tokens"}``: the deterministic token-mean loss (no dropout,
    no SpecAugment) and the labelled-token count, to weight batches when averaging over a set."""

    def step(params: Params, batch: Batch) -> Metrics:
        total, tokens = _summed_loss(model, params, batch, None, False)
        return {"loss": total / jnp.maximum(tokens, 1), "tokens": tokens}

    return jax.jit(step)
