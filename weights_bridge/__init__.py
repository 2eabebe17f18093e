"""Weights between formats: one table of per-tensor rules, strict converters, and the canonical checkpoint.

Framework-neutral: NumPy and safetensors only (torch is imported lazily to read ``.bin``/``.pt`` files).
"""

from .canonical import load_checkpoint, load_weights, save_checkpoint, save_weights
from .conversion import convert_checkpoint, read_checkpoint
from .engine import canonical_shapes, check_canonical, from_canonical, to_canonical
from .fetching import cache_home, fetch
from .live import convert, to_flax, to_pt

__all__ = [
    "cache_home",
    "canonical_shapes",
    "check_canonical",
    "convert",
    "convert_checkpoint",
    "fetch",
    "from_canonical",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint",
    "save_checkpoint",
    "save_weights",
    "to_canonical",
    "to_flax",
    "to_pt",
]
