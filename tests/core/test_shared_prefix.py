"""The prefix passes that a window's temperatures share: kept only inside the scope, for equal inputs of the
same model, the last one only."""

from __future__ import annotations

import numpy as np

from whisper_core.decoding import shared_prefix_pass, sharing_prefix_passes


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _counted_pass(owner: object, *inputs: np.ndarray) -> tuple[object, list[int]]:
    runs: list[int] = []

    def run() -> object:
        runs.append(1)
        return object()

    return shared_prefix_pass(owner, inputs, _same, run), runs


def test_outside_the_scope_every_pass_runs():
    model, states = object(), np.ones((1, 4))
    first, runs = _counted_pass(model, states)
    second, more = _counted_pass(model, states.copy())
    assert runs == more == [1] and first is not second


def test_inside_the_scope_equal_inputs_of_the_same_model_share_the_last_pass():
    model, other, states, prefix = object(), object(), np.ones((1, 4)), np.arange(3)
    with sharing_prefix_passes():
        first, runs = _counted_pass(model, states, prefix)
        assert runs == [1]
        again, rerun = _counted_pass(model, states.copy(), prefix.copy())  # equal values, other arrays
        assert again is first and rerun == []
        _, elsewhere = _counted_pass(other, states, prefix)  # another model runs its own
        assert elsewhere == [1]
        assert _counted_pass(model, states, prefix)[0] is first  # each model keeps its last pass
        changed, rerun = _counted_pass(model, states, prefix + 1)  # another prompt
        assert changed is not first and rerun == [1]
        assert _counted_pass(model, states, prefix)[1] == [1]  # only the last pass is kept
        assert _counted_pass(model, states[:, :2], prefix)[1] == [1]  # another shape
    assert _counted_pass(model, states, prefix)[1] == [1]  # the scope closed: nothing is kept
