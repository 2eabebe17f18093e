"""whisper_pt's greedy pick is the shared ``first_argmax`` over TorchOps, as in the TF and Flax loops (torch's
own argmax already follows its rule)."""

from __future__ import annotations

import numpy as np
import torch

from whisper_core.decoding import first_argmax
from whisper_pt.generation import TorchOps, _pick


def test_first_argmax_is_numpys_argmax():
    """The shared greedy pick, run on torch ops, agrees with np.argmax (ties, infinities, NaNs) and gives
    torch's token dtype, int64."""
    from tests.conftest import argmax_edge_rows

    rows = argmax_edge_rows()
    picked = first_argmax(TorchOps(), torch.from_numpy(rows))
    np.testing.assert_array_equal(picked.numpy(), rows.argmax(axis=-1))
    assert picked.dtype == torch.int64
    assert torch.equal(_pick(torch.from_numpy(rows), None, None), picked)
