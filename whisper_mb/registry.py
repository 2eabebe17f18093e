"""The one list of backends: which package, which class names, which engine adapter.

Everything that picks a backend by name (the CLI, the parity check, live conversion, the coming
server) asks here; no other module names the backend packages. A backend's package is imported only
when one of its classes is asked for, so listing the backends loads no framework.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from weights_bridge import quantization
from whisper_core.transcribe.backends import ModelBackend

from .adapters import FlaxBackend, TFBackend, TorchBackend

# The model classes every backend offers, without their framework prefix (transformers 4.x names).
KINDS = ("WhisperModel", "WhisperForConditionalGeneration", "WhisperForAudioClassification")


@dataclass(frozen=True)
class BackendSpec:
    """One backend: ``package`` holds ``class_prefix + kind`` for every kind in :data:`KINDS`."""

    name: str
    package: str
    class_prefix: str
    adapter: type[ModelBackend]

    def model_class(self, kind: str = "WhisperForConditionalGeneration") -> Any:
        """The backend's class of ``kind`` (importing its framework)."""
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}: choose from {KINDS}")
        return getattr(importlib.import_module(self.package), self.class_prefix + kind)

    def finetuner(self) -> Any:
        """The backend's ``Finetuner`` class (``<package>.finetune``; importing its framework)."""
        return importlib.import_module(f"{self.package}.finetune").Finetuner

    def is_installed(self) -> bool:
        """Whether the package and its framework import (an extra the user did not install does not)."""
        if importlib.util.find_spec(self.package) is None:
            return False
        try:
            self.model_class()
        except ImportError:
            return False
        return True


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec("pt", "whisper_pt", "", TorchBackend),
        BackendSpec("flax", "whisper_flax", "Flax", FlaxBackend),
        BackendSpec("tf", "whisper_tf", "TF", TFBackend),
    )
}


def backend(name: str) -> BackendSpec:
    """The backend called ``name``, or a ``ValueError`` that lists the known ones."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {sorted(BACKENDS)}")
    return BACKENDS[name]


def backend_of(model: Any) -> str:
    """The name of the backend a model instance belongs to."""
    package = type(model).__module__.split(".")[0]
    for spec in BACKENDS.values():
        if spec.package == package:
            return spec.name
    raise TypeError(f"{type(model).__name__} is not a whisper-multibackend model")


def load_backend(name: str, directory: str, compute_type: str = "float32") -> ModelBackend:
    """A checkpoint directory loaded with backend ``name`` ("pt", "tf" or "flax") in ``compute_type``
    (:data:`weights_bridge.quantization.COMPUTE_TYPES`), ready for the engine."""
    spec = backend(name)
    quantization.check_compute_type(compute_type)  # before importing a framework
    return spec.adapter(spec.model_class().from_pretrained(directory, compute_type=compute_type))
