"""The update loop of the backends that train step by step in Python (PyTorch and JAX).

TensorFlow hands its updates to ``keras.Model.fit`` instead; all three share one contract:
``fit(batches, steps, after_update)`` takes ``steps`` batches from ``batches`` in order and reports each
update's metrics to ``after_update`` before the next one starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

Batch = dict[str, np.ndarray]
AfterUpdate = Callable[[dict[str, float]], None]


def step_by_step(
    train_step: Callable[[Batch], dict[str, float]], batches: Iterator[Batch], steps: int, after_update: AfterUpdate
) -> None:
    """``steps`` updates, each on the next batch (none is drawn past the last update)."""
    for _, batch in zip(range(steps), batches, strict=False):
        after_update(train_step(batch))
