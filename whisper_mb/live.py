"""Move a live model between backends in memory: PyTorch, TensorFlow and Flax, every direction.

Every backend model offers ``canonical_tensors()`` (its weights under canonical names, as NumPy)
and ``from_canonical(config, tensors, generation_config)``; this module only picks the class of
the same kind in the target backend from :mod:`whisper_mb.registry`. Values are copied exactly
(bfloat16, which NumPy lacks, travels as float32).
"""

from __future__ import annotations

from typing import Any

from .registry import BACKENDS, KINDS, backend, backend_of


def convert(model: Any, to: str, **options: Any) -> Any:
    """The same model in backend ``to`` ("pt", "tf" or "flax"); ``options`` go to the target's
    ``from_canonical`` (``torch_dtype=`` for PyTorch, ``dtype=`` / ``param_dtype=`` for Flax)."""
    target = backend(to)
    kind = type(model).__name__.removeprefix(BACKENDS[backend_of(model)].class_prefix)
    if kind not in KINDS:
        raise TypeError(f"cannot convert a {type(model).__name__}: only {KINDS} move between backends")
    generation_config = getattr(model, "generation_config", None)
    return target.model_class(kind).from_canonical(
        model.config, model.canonical_tensors(), generation_config, **options
    )


def to_pt(model: Any, **options: Any) -> Any:
    """A PyTorch copy of ``model`` (for instance Flax params after fine-tuning)."""
    return convert(model, "pt", **options)


def to_tf(model: Any, **options: Any) -> Any:
    """A TensorFlow copy of ``model`` (for instance to export a SavedModel)."""
    return convert(model, "tf", **options)


def to_flax(model: Any, **options: Any) -> Any:
    """A Flax copy of ``model`` (for instance a PyTorch checkpoint, to fine-tune on TPUs with optax)."""
    return convert(model, "flax", **options)
