"""The few array operations the decoding rules need, so the rules are written once for every backend.

Each backend supplies an object with these methods over its own tensors (PyTorch, TensorFlow,
JAX); :class:`NumpyOps` is the reference. Everything is branch-free and shape-static, so the
rules run inside a compiled loop (``lax.while_loop``, ``tf.function(jit_compile=True)``).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class ArrayOps(Protocol):
    """Array operations on ``[batch, n]`` tensors; ``axis`` is always the last one."""

    def constant(self, values: np.ndarray, like: Any) -> Any:
        """``values`` as a tensor of the backend, on the device of ``like``."""

    def where(self, condition: Any, x: Any, y: Any) -> Any: ...

    def sum(self, x: Any) -> Any:
        """Sum over the last axis, keeping it (``[batch, 1]``)."""

    def max(self, x: Any) -> Any:
        """Maximum over the last axis, keeping it (``[batch, 1]``)."""

    def logsumexp(self, x: Any) -> Any:
        """Log-sum-exp over the last axis, keeping it (``[batch, 1]``)."""

    def log_softmax(self, x: Any) -> Any: ...

    def neg_inf(self, like: Any) -> Any:
        """A ``-inf`` scalar of ``like``'s dtype."""


class NumpyOps:
    """The reference implementation of :class:`ArrayOps`."""

    def constant(self, values: np.ndarray, like: Any) -> np.ndarray:
        return np.asarray(values)

    def where(self, condition: np.ndarray, x: Any, y: Any) -> np.ndarray:
        return np.where(condition, x, y)

    def sum(self, x: np.ndarray) -> np.ndarray:
        return x.sum(axis=-1, keepdims=True)

    def max(self, x: np.ndarray) -> np.ndarray:
        return x.max(axis=-1, keepdims=True)

    def logsumexp(self, x: np.ndarray) -> np.ndarray:
        peak = x.max(axis=-1, keepdims=True)
        safe_peak = np.where(np.isfinite(peak), peak, 0.0)
        with np.errstate(divide="ignore"):
            return np.log(np.exp(x - safe_peak).sum(axis=-1, keepdims=True)) + safe_peak

    def log_softmax(self, x: np.ndarray) -> np.ndarray:
        return x - self.logsumexp(x)

    def neg_inf(self, like: np.ndarray) -> Any:
        return np.array(-np.inf, dtype=like.dtype)

    # -- beam search (whisper_core.decoding.beam.BeamOps) ----------------------------------
    def top_k(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        indices = np.argsort(-x, axis=-1, kind="stable")[..., :k]
        return np.take_along_axis(x, indices, axis=-1), indices

    def gather_beams(self, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return x[np.arange(x.shape[0])[:, None], indices]

    def concat(self, tensors: list[np.ndarray], axis: int) -> np.ndarray:
        return np.concatenate(tensors, axis=axis)

    def set_column(self, x: np.ndarray, column: np.ndarray, index: int) -> np.ndarray:
        x = x.copy()
        x[:, :, index] = column
        return x

    def to_float(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32)

    def reshape(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return np.reshape(x, shape)

    def min(self, x: np.ndarray) -> np.ndarray:
        return x.min(axis=-1, keepdims=True)

    def any(self, x: np.ndarray) -> np.ndarray:
        return x.any(axis=-1, keepdims=True)

    def all_true(self, x: np.ndarray) -> bool:
        return bool(np.all(x))

    # -- greedy pick (first_argmax) ------------------------------------------------------------
    def is_nan(self, x: np.ndarray) -> np.ndarray:
        return np.isnan(x)

    def positions(self, like: np.ndarray) -> np.ndarray:
        return np.arange(like.shape[-1], dtype=np.int32)

    # -- sampling (keep_top_k, invert_distribution) ------------------------------------------
    def cumsum(self, x: np.ndarray) -> np.ndarray:
        return np.cumsum(x, axis=-1, dtype=x.dtype)

    def float_bits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float32).view(np.int32)

    def from_float_bits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.int32).view(np.float32)


def first_argmax(ops: Any, logits: Any) -> Any:
    """argmax over the last axis of ``logits [b, vocab]`` as ``[b]`` indices: the first maximum, a NaN
    counting as the maximum (NumPy's rule).

    Ops whose framework has an argmax that follows this rule and is fast supply it as ``ops.argmax``
    (torch: 47 us per row against 263 us in two passes, on one CPU thread). The others need ``max``,
    ``min``, ``where``, ``is_nan`` and ``positions`` (whose dtype the indices take: int32), for two passes
    that vectorise: a max, then the smallest index holding it. XLA on CPU runs argmax as one (value,
    index) reduction that does not: 229 us against 44 us per row over Whisper's 51865 logits, about 3%
    of tiny.en's batch-1 decode step.
    """
    native = getattr(ops, "argmax", None)
    if native is not None:
        return native(logits)
    top = ops.max(logits)  # [b, 1]: NaN when the row has one
    hits = ops.where(ops.is_nan(top), ops.is_nan(logits), logits == top)
    return ops.min(ops.where(hits, ops.positions(logits), logits.shape[-1]))[:, 0]


def keep_top_k(ops: Any, logits: Any, k: int) -> Any:
    """``logits [rows, vocab]`` with every value below its row's ``k``-th largest set to ``-inf``.

    The threshold is found exactly by bisection over the float32 bit patterns, mapped to integers in the
    floats' order: 32 counting passes over the vocabulary, branch-free. XLA on CPU sorts the whole
    vocabulary for ``top_k`` (61 ms at 8 rows in TF, ~60 ms in JAX; the passes ~3 ms). Needs the ops'
    ``float_bits`` / ``from_float_bits`` (float32 <-> int32 views), ``where``, ``sum`` and ``neg_inf``; the integer
    arithmetic uses Python's operators (``//`` by 2 is the arithmetic shift, which TF tensors lack).
    """
    k = min(k, logits.shape[-1])
    bits = ops.float_bits(logits)
    keys = ops.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # integers ordered as the floats are
    no_key = keys[:, :1] * 0
    low = no_key + np.int32(np.iinfo(np.int32).min)  # count(keys >= low) >= k holds throughout
    high = no_key + np.int32(np.iinfo(np.int32).max)
    for _ in range(32):  # the largest key t with count(keys >= t) >= k: the k-th largest key
        middle = low // 2 + high // 2 + ((low & 1) | (high & 1))  # ceil of the mean, never overflowing
        enough = ops.sum(ops.where(keys >= middle, 1, 0)) >= k
        low, high = ops.where(enough, middle, low), ops.where(enough, high, middle - 1)
    kth = ops.from_float_bits(ops.where(low < 0, low ^ 0x7FFFFFFF, low))
    below = ops.from_float_bits(bits) < kth  # compared in float32, the precision the threshold was found in
    return ops.where(below, ops.neg_inf(logits), logits)


# Tokens per block of the sampling search: the vocabulary's cumulative sum is taken over block totals, then
# inside the one block the draw falls in (XLA on CPU takes ~1 ms for a cumulative sum over five rows of
# Whisper's 51865 tokens, about as long as the rest of a sampling pick).
SAMPLING_BLOCK = 256


def invert_distribution(ops: Any, logits: Any, probabilities: Any, draw: Any) -> Any:
    """``[rows]`` the token drawn from ``probabilities [rows, vocab]`` (the softmax of ``logits``) by
    inverting the cumulative distribution at ``draw [rows, 1]`` (uniform in [0, 1)) times the row's total:
    the last token of positive probability whose interval starts at or before it, so a token of
    probability 0 is never drawn, not even when rounding puts the target at the total. One random number
    per row, where a Gumbel-max draw takes one per token.

    The search runs in two levels of :data:`SAMPLING_BLOCK` tokens: the last block of positive mass that
    starts at or before the target, then the last token of positive probability inside it that does (its
    first such token starts where the block does, so there always is one). Sums of non-negative terms
    never decrease, so the intervals stay in order in any precision. Needs ``cumsum``, ``reshape``,
    ``gather_beams`` (a row's entries at per-row indices) besides the ops of :func:`first_argmax`.

    A row whose probabilities are NaN (NaN logits) holds no interval: it takes greedy's pick
    (:func:`first_argmax`: the first NaN), the same token in every backend.
    """
    vocab = probabilities.shape[-1]
    size = min(SAMPLING_BLOCK, vocab)  # so that the padding (< size) can be cut from the row itself
    blocks = -(-vocab // size)
    padding = blocks * size - vocab
    if padding:
        probabilities = ops.concat([probabilities, probabilities[:, :padding] * 0], axis=-1)
    grid = ops.reshape(probabilities, (-1, blocks, size))
    block_mass = ops.sum(grid)[:, :, 0]  # [rows, blocks]
    block, block_start, target = _last_interval_at_or_before(ops, block_mass, draw)
    found = block >= 0
    block = ops.where(found, block, 0)
    inside = ops.reshape(ops.gather_beams(grid, block), (-1, size))  # [rows, size]
    starts = _exclusive_cumsum(ops, inside) + ops.gather_beams(block_start, block)
    hits = (inside > 0) & (starts <= target)
    token = block * size + ops.max(ops.where(hits, ops.positions(inside), -1))
    return ops.where(found, token, first_argmax(ops, logits)[:, None])[:, 0]


def sampling_draws(seed: int, steps: int, rows: int) -> np.ndarray:
    """``[steps, rows]`` float32 uniform in [0, 1): the draw of each decoding row at each new token for
    :func:`invert_distribution`, from NumPy's generator seeded with ``seed`` (any integer; taken modulo
    2**64). Made on the host and handed to every backend's loop, so one seed samples the same tokens in
    PyTorch, TensorFlow and JAX. With each framework's own generator, a window that fell back to sampling
    got other text in each backend, and the windows after it moved: on the benchmarks' 127 s file
    (2026-12-07) PyTorch decoded 5 windows in 9 passes and TensorFlow 6 in 10, with other words in the last
    25 s; with these draws the three transcripts are the same, segment for segment. The only difference
    left is float rounding: a draw that lands within it of the edge between two tokens (in practice two
    tail tokens, each far below 1e-6, at temperature 1 over the whole vocabulary) picks a neighbour."""
    return np.random.default_rng(seed % 2**64).random((steps, rows), dtype=np.float32)


def _last_interval_at_or_before(ops: Any, mass: Any, draw: Any) -> tuple[Any, Any, Any]:
    """``(index [rows, 1], starts [rows, n], target [rows, 1])``: the last entry of ``mass [rows, n]`` of
    positive mass whose interval of the cumulative sum starts at or before ``target`` (``draw`` times the
    row's total; index -1 where none does), the intervals' starts and the target."""
    starts = _exclusive_cumsum(ops, mass)
    target = draw * (starts[:, -1:] + mass[:, -1:])
    hits = (mass > 0) & (starts <= target)
    return ops.max(ops.where(hits, ops.positions(mass), -1)), starts, target


def _exclusive_cumsum(ops: Any, x: Any) -> Any:
    """Each entry's sum of the entries before it in its row (0 for the first)."""
    return ops.concat([x[:, :1] * 0, ops.cumsum(x)[:, :-1]], axis=-1)
