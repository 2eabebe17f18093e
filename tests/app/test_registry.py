"""The one list of backends: every entry names a package that has every model kind, and a wrong name is
refused with the choices."""

from __future__ import annotations

import pytest

from whisper_core.transcribe import ModelBackend
from whisper_mb.registry import BACKENDS, KINDS, backend, backend_of


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_offers_every_kind_and_an_engine_adapter(name):
    spec = backend(name)
    assert spec.name == name and spec.is_installed()
    for kind in KINDS:
        assert spec.model_class(kind).__name__ == spec.class_prefix + kind
    assert issubclass(spec.adapter, ModelBackend) and spec.adapter.name == name


def test_wrong_names_are_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown backend 'jax': choose one of \['flax', 'pt', 'tf'\]"):
        backend("jax")
    with pytest.raises(ValueError, match="unknown model kind"):
        backend("pt").model_class("WhisperForCausalLM")
    with pytest.raises(TypeError, match="not a whisper-multibackend model"):
        backend_of(object())
