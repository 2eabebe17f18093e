"""Move a live model between backends in memory: PyTorch <-> Flax (TensorFlow once whisper_tf exists).

Every backend model offers ``canonical_tensors()`` (its weights under canonical names, as NumPy)
and ``from_canonical(config, tensors, generation_config)``; this module only picks the class of
the same kind in the target backend. The backends are imported when asked for, so the bridge
stays framework-free. Values are copied exactly (bfloat16, which NumPy lacks, travels as float32).
"""

from __future__ import annotations

import importlib
from typing import Any

# backend name -> (package, class-name prefix)
BACKENDS: dict[str, tuple[str, str]] = {
    "pt": ("whisper_pt", ""),
    "flax": ("whisper_flax", "Flax"),
    "tf": ("whisper_tf", "TF"),
}
KINDS = ("WhisperModel", "WhisperForConditionalGeneration", "WhisperForAudioClassification")


def backend_of(model: Any) -> str:
    """The backend a model instance belongs to."""
    package = type(model).__module__.split(".")[0]
    for name, (candidate, _) in BACKENDS.items():
        if package == candidate:
            return name
    raise TypeError(f"{type(model).__name__} is not a whisper-multibackend model")


def convert(model: Any, to: str, **options: Any) -> Any:
    """The same model in backend ``to`` ("pt" or "flax"); ``options`` go to the target's ``from_canonical``
    (``torch_dtype=`` for PyTorch, ``dtype=`` / ``param_dtype=`` for Flax)."""
    if to not in BACKENDS:
        raise ValueError(f"unknown backend {to!r}: choose from {sorted(BACKENDS)}")
    source_prefix = BACKENDS[backend_of(model)][1]
    kind = type(model).__name__.removeprefix(source_prefix)
    if kind not in KINDS:
        raise TypeError(f"cannot convert a {type(model).__name__}: only {KINDS} move between backends")
    package, prefix = BACKENDS[to]
    target = getattr(importlib.import_module(package), prefix + kind)
    generation_config = getattr(model, "generation_config", None)
    return target.from_canonical(model.config, model.canonical_tensors(), generation_config, **options)


def to_pt(model: Any, **options: Any) -> Any:
    """A PyTorch copy of ``model`` (for instance Flax params after fine-tuning)."""
    return convert(model, "pt", **options)


def to_flax(model: Any, **options: Any) -> Any:
    """A Flax copy of ``model`` (for instance a PyTorch checkpoint, to fine-tune on TPUs with optax)."""
    return convert(model, "flax", **options)
