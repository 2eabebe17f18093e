"""A small random checkpoint on disk for the ``compute_type`` tests of every backend, and what its int8
weights must be (the bridge's NumPy reference). Imports no backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers import SMALL
from weights_bridge import engine, pretrained, quantization
from whisper_core.config import WhisperConfig


def random_checkpoint(directory: Path, seed: int = 0) -> Path:
    """``SMALL`` with N(0, 1/sqrt(fan_in)) matrices (outputs depend on the input) and a few all-zero
    rows in one Linear weight (the scale-1 case), written as a canonical checkpoint."""
    config = WhisperConfig(**SMALL)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in engine.canonical_shapes(config).items():
        scale = 1.0 / np.sqrt(shape[-1]) if len(shape) >= 2 else 0.1
        tensors[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    tensors["model.decoder.layers.0.fc1.weight"][:3] = 0.0
    return pretrained.save(directory, tensors, config, None)


def reference_int8(directory: Path) -> dict[str, quantization.Int8Weight]:
    """The bridge's int8 weights of the checkpoint in ``directory``, by canonical name."""
    checkpoint = pretrained.load(directory, has_heads=False)
    return quantization.quantize_tensors(checkpoint.tensors)[1]
