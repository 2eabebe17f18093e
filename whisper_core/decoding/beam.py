"""Beam search bookkeeping, written once over array ops, with transformers 4.57's exact semantics.

transformers' vectorised beam search (``GenerationMixin._beam_search``) is branch-free, so its
steps are reproduced here as pure functions of a :class:`BeamState`: keep the ``2 * beams``
best continuations, continue the best ``beams`` that did not stop, move the ones that did stop
(end of text or length limit) into the finished set scored ``log p / generated ** length_penalty``,
and stop when no running beam can beat the worst finished one (``early_stopping=False``
heuristic). Each backend supplies :class:`BeamOps` and runs the model; the NumPy ops in
tests are the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .ops import ArrayOps

if TYPE_CHECKING:
    from .plan import LoopSpec

UNREACHABLE = -1.0e9  # transformers' score for "never pick this"


class BeamOps(ArrayOps, Protocol):
    """:class:`ArrayOps` plus the few operations beam search needs."""

    def top_k(self, x: Any, k: int) -> tuple[Any, Any]:
        """Largest ``k`` values of ``x [batch, n]`` and their indices, best first."""

    def gather_beams(self, x: Any, indices: Any) -> Any:
        """``x [batch, beams, ...]`` rows picked by ``indices [batch, k]`` -> ``[batch, k, ...]``."""

    def concat(self, tensors: list[Any], axis: int) -> Any: ...

    def set_column(self, x: Any, column: Any, index: int) -> Any:
        """``x [batch, k, length]`` with ``x[:, :, index] = column [batch, k]`` (a new tensor)."""

    def to_float(self, x: Any) -> Any: ...

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any: ...

    def min(self, x: Any) -> Any:
        """Minimum over the last axis, keeping it."""

    def any(self, x: Any) -> Any:
        """Logical or over the last axis, keeping it."""

    def all_true(self, x: Any) -> bool:
        """Whether every element is true, as a Python bool (ends the eager loop)."""


@dataclass(frozen=True)
class BeamState:
    """Running and finished hypotheses of every batch item (``[batch, beams, ...]``)."""

    running: Any  # [batch, beams, capacity] token ids
    running_scores: Any  # [batch, beams] summed log-probabilities
    finished: Any  # [batch, beams, capacity]
    finished_scores: Any  # [batch, beams] length-normalised scores (-1e9 = empty slot)
    finished_lengths: Any  # [batch, beams] sequence length of each finished hypothesis
    is_finished: Any  # [batch, beams] bool: slot holds a finished hypothesis
    improvable: Any  # [batch, 1] bool: a running beam can still beat the finished ones
    all_stopped: Any  # [batch, 2 * beams] bool: every candidate of the last step stopped
    source_beam: Any  # [batch, beams] which previous beam each running beam continues (for the cache)


def initial_state(ops: BeamOps, prefix: np.ndarray, num_beams: int, capacity: int, pad: int, like: Any) -> BeamState:
    """Every beam starts as ``prefix [batch, length]``; only the first one is alive at first."""
    batch, length = prefix.shape
    running = np.full((batch, num_beams, capacity), pad, dtype=np.int64)
    running[:, :, :length] = prefix[:, None, :]
    scores = np.zeros((batch, num_beams), dtype=np.float32)
    scores[:, 1:] = UNREACHABLE
    return BeamState(
        running=ops.constant(running, like),
        running_scores=ops.constant(scores, like),
        finished=ops.constant(running, like),
        finished_scores=ops.constant(np.full((batch, num_beams), UNREACHABLE, np.float32), like),
        finished_lengths=ops.constant(np.full((batch, num_beams), length, np.int64), like),
        is_finished=ops.constant(np.zeros((batch, num_beams), bool), like),
        improvable=ops.constant(np.ones((batch, 1), bool), like),
        all_stopped=ops.constant(np.zeros((batch, 2 * num_beams), bool), like),
        source_beam=ops.constant(np.tile(np.arange(num_beams), (batch, 1)), like),
    )


def step(
    ops: BeamOps,
    state: BeamState,
    log_probs: Any,
    *,
    length: int,
    begin: int,
    capacity: int,
    eos: int,
    length_penalty: float,
) -> BeamState:
    """Advance by one token. ``log_probs [batch, beams, vocab]`` are processed log-probabilities of
    the next token; ``length`` is the current sequence length (the new token goes at ``length``), a
    Python int in eager loops or a scalar tensor inside compiled ones."""
    batch, num_beams, vocab = log_probs.shape
    keep = 2 * num_beams
    accumulated = ops.reshape(log_probs + state.running_scores[:, :, None], (batch, num_beams * vocab))
    top_scores, top_indices = ops.top_k(accumulated, keep)  # [batch, 2 * beams]
    parent = top_indices // vocab
    token = top_indices % vocab
    candidates = ops.set_column(ops.gather_beams(state.running, parent), token, length)
    stops = (token == eos) | (length + 1 >= capacity)  # [batch, 2 * beams]

    # The best beams that did not stop keep running.
    alive_scores = top_scores + ops.to_float(stops) * UNREACHABLE
    _, best_alive = ops.top_k(alive_scores, num_beams)
    running = ops.gather_beams(candidates, best_alive)
    running_scores = ops.gather_beams(alive_scores, best_alive)
    source_beam = ops.gather_beams(parent, best_alive)

    # Stopped candidates among the top ``beams`` join the finished set if they beat its members.
    in_top = ops.constant(np.arange(keep) < num_beams, top_scores)[None, :]
    just_finished = stops & in_top
    length_norm = (length + 1 - begin) ** length_penalty  # a float, or a traced scalar
    normalised = top_scores / length_norm
    normalised = normalised + ops.to_float(~state.improvable) * UNREACHABLE
    normalised = normalised + ops.to_float(~just_finished) * UNREACHABLE
    merged_scores = ops.concat([state.finished_scores, normalised], axis=1)
    _, best = ops.top_k(merged_scores, num_beams)
    finished = ops.gather_beams(ops.concat([state.finished, candidates], axis=1), best)
    finished_scores = ops.gather_beams(merged_scores, best)
    candidate_lengths = token * 0 + (length + 1)  # [batch, 2 * beams]
    finished_lengths = ops.gather_beams(ops.concat([state.finished_lengths, candidate_lengths], axis=1), best)
    is_finished = ops.gather_beams(ops.concat([state.is_finished, just_finished], axis=1), best)

    # early_stopping=False: can the best running beam, scored at the current length, still win?
    best_running = running_scores[:, :1] / length_norm
    worst_finished = ops.where(is_finished, ops.min(finished_scores), UNREACHABLE)
    improvable = state.improvable & ops.any(best_running > worst_finished)
    return replace(
        state,
        running=running,
        running_scores=running_scores,
        finished=finished,
        finished_scores=finished_scores,
        finished_lengths=finished_lengths,
        is_finished=is_finished,
        improvable=improvable,
        all_stopped=stops,
        source_beam=source_beam,
    )


def advance(
    ops: BeamOps,
    spec: LoopSpec,
    masks: dict[str, Any],
    state: BeamState,
    logits: Any,
    *,
    length: Any,
    begin: int,
    step_length: Any = None,
) -> BeamState:
    """One step of a backend's beam loop: the model's ``logits [batch * beams, vocab]`` for the token at
    ``length`` -> log-probabilities in float32 -> the logit rules (``masks`` from ``spec.rules.masks``)
    over each beam's tokens so far -> :func:`step`. ``step_length``: ``length`` as :func:`step` should
    see it, where that differs (TensorFlow raises a traced length to a float power through a wrapper)."""
    batch, beams, capacity = state.running.shape
    log_probs = ops.log_softmax(ops.to_float(logits))
    running = ops.reshape(state.running, (batch * beams, capacity))
    log_probs = spec.rules.apply(ops, log_probs, running, length, begin, masks)
    return step(
        ops,
        state,
        ops.reshape(log_probs, (batch, beams, -1)),
        length=length if step_length is None else step_length,
        begin=begin,
        capacity=capacity,
        eos=spec.eos,
        length_penalty=spec.length_penalty,
    )


def continuing(ops: BeamOps, state: BeamState) -> Any:
    """transformers' loop condition with ``early_stopping=False``, as a ``[1, 1]`` bool tensor (so a
    compiled loop can test it): some item can still improve, and some candidate of the last step
    did not stop."""
    improvable = ops.any(ops.reshape(state.improvable, (1, -1)))
    still_running = ops.any(ops.reshape(~state.all_stopped, (1, -1)))
    return improvable & still_running


def should_continue(ops: BeamOps, state: BeamState) -> bool:
    """:func:`continuing` as a Python bool, for eager loops."""
    return ops.all_true(continuing(ops, state))


def best_sequences(ops: BeamOps, state: BeamState, num_return_sequences: int = 1) -> tuple[Any, Any, int]:
    """The ``num_return_sequences`` best finished hypotheses per item, ``[batch * n, length]``, their
    scores, and the length to cut the sequences to (the longest returned one)."""
    batch, _, capacity = state.finished.shape
    sequences = ops.reshape(state.finished[:, :num_return_sequences], (batch * num_return_sequences, capacity))
    scores = ops.reshape(state.finished_scores[:, :num_return_sequences], (batch * num_return_sequences,))
    lengths = state.finished_lengths[:, :num_return_sequences]
    return sequences, scores, int(ops.reshape(ops.max(ops.reshape(lengths, (1, -1))), ()))
