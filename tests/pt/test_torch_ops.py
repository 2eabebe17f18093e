"""whisper_pt's greedy pick is the shared ``first_argmax`` over TorchOps, as in the TF and Flax loops (torch's
own argmax already follows its rule)."""

from __future__ import annotations

import numpy as np
import torch

from tests.helpers import assert_inverts_distribution, assert_samples_nan_rows_as_greedy
from whisper_core.decoding import first_argmax, invert_distribution
from whisper_pt.generation import TorchOps, _pick


def test_first_argmax_is_numpys_argmax():
    """The shared greedy pick, run on torch ops, agrees with np.argmax (ties, infinities, NaNs) and gives
    torch's token dtype, int64."""
    from tests.conftest import argmax_edge_rows

    rows = argmax_edge_rows()
    picked = first_argmax(TorchOps(), torch.from_numpy(rows))
    np.testing.assert_array_equal(picked.numpy(), rows.argmax(axis=-1))
    assert picked.dtype == torch.int64
    assert torch.equal(_pick(torch.from_numpy(rows), None, 1.0, torch.zeros(len(rows), 1)), picked)


def test_a_sampled_token_follows_the_softmax_at_the_temperature():
    """The sampling pick draws each token as often as its softmax probability at the temperature says
    (20000 rows of uniform draws, within 4 standard deviations), never a token the rules masked to -inf."""
    logits = torch.tensor([[2.0, 1.0, float("-inf"), 0.0, -1.0, float("-inf")]])
    probabilities = torch.softmax(logits / 0.7, dim=-1)[0]
    draws = torch.rand((20000, 1), generator=torch.Generator().manual_seed(0))
    picks = _pick(logits.expand(20000, -1), 0, 0.7, draws)
    counts = torch.bincount(picks, minlength=logits.shape[1]).double()
    spread = 4 * torch.sqrt(20000 * probabilities * (1 - probabilities)) + 1e-9
    assert bool(((counts - 20000 * probabilities).abs() <= spread).all()), counts
    assert counts[2] == 0 and counts[5] == 0


def test_a_row_of_nan_logits_samples_greedys_token():
    draws = torch.rand((3, 1), generator=torch.Generator().manual_seed(0))
    assert_samples_nan_rows_as_greedy(lambda logits, k: _pick(torch.from_numpy(logits), k, 0.7, draws), np.int64)


def test_sampling_inverts_the_distribution():
    def invert(rows: np.ndarray, draws: np.ndarray) -> torch.Tensor:
        probabilities = torch.from_numpy(rows)
        return invert_distribution(TorchOps(), probabilities, probabilities, torch.from_numpy(draws))

    assert_inverts_distribution(invert, np.float32)
