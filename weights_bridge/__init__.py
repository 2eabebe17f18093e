"""Weights between formats: one table of per-tensor rules, strict converters, and the canonical checkpoint.

Framework-neutral: NumPy and safetensors only (torch is imported lazily to read ``.bin``/``.pt`` files).
The bridge never imports a backend: moving a live model between backends is :mod:`whisper_mb.live`'s job.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from .canonical import load_checkpoint, load_weights, save_checkpoint, save_weights
from .conversion import convert_checkpoint, read_checkpoint
from .engine import canonical_shapes, check_canonical, from_canonical, to_canonical
from .fetching import cache_home, fetch, resolve_model

__all__ = [
    "cache_home",
    "canonical_shapes",
    "check_canonical",
    "convert_checkpoint",
    "fetch",
    "from_canonical",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint",
    "resolve_model",
    "save_checkpoint",
    "save_weights",
    "to_canonical",
]

# Names that lived here before the application layer existed; they still resolve, with a warning, so
# that user code written against 0.1 keeps working. The module is imported only when one is asked for.
_MOVED_TO_APPLICATION = {"convert", "to_flax", "to_pt"}


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_APPLICATION:
        warnings.warn(
            f"weights_bridge.{name} moved to whisper_mb.{name}; import it from there", DeprecationWarning, stacklevel=2
        )
        return getattr(importlib.import_module("whisper_mb.live"), name)
    raise AttributeError(f"module 'weights_bridge' has no attribute {name!r}")
