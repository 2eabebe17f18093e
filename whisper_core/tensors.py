"""Turn NumPy arrays into the caller's framework tensors, importing that framework only on demand.

``import whisper_core`` must stay framework-free, so every framework import here is local to
the branch that needs it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RETURN_TENSORS = (None, "np", "pt", "tf", "jax")


def check_return_tensors(return_tensors: str | None) -> None:
    if return_tensors not in RETURN_TENSORS:
        raise ValueError(f"return_tensors must be one of {RETURN_TENSORS}, got {return_tensors!r}")


def convert(array: np.ndarray, return_tensors: str | None, device: str | None = None) -> Any:
    """Return ``array`` as a ``return_tensors`` tensor ("np", "pt", "tf", "jax"; None keeps NumPy)."""
    check_return_tensors(return_tensors)
    if return_tensors in (None, "np"):
        return array
    if return_tensors == "pt":
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor.to(device) if device not in (None, "cpu") else tensor
    if return_tensors == "tf":
        import tensorflow as tf

        return tf.constant(array)
    import jax.numpy as jnp

    return jnp.asarray(array)


class BatchFeature(dict):
    """A dict of model inputs that also reads like attributes (``batch.input_features``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def convert_to_tensors(self, return_tensors: str | None, device: str | None = None) -> BatchFeature:
        """Convert every array value in place; lists of ragged arrays stay lists."""
        for key, value in self.items():
            if isinstance(value, np.ndarray):
                self[key] = convert(value, return_tensors, device)
        return self
