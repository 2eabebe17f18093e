"""One small driver per backend, so the parity tests are written once over every pair of backends.

A runner loads a model class by its transformers name from a checkpoint directory, runs a forward
pass, the gradient of the loss (returned under canonical tensor names, so backends compare name by
name), and ``generate``; everything comes back as NumPy. Backends that are not installed are
skipped, not failed.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from tests.helpers import max_abs
from whisper_mb.registry import BACKENDS


def backends() -> list[Any]:
    """Every backend, as pytest params skipped when it is missing."""
    return [
        pytest.param(name, id=name, marks=pytest.mark.skipif(not spec.is_installed(), reason="not installed"))
        for name, spec in BACKENDS.items()
    ]


def pairs() -> list[Any]:
    """Every pair of backends, as pytest params skipped when either is missing."""
    return [
        pytest.param(
            (a, b),
            id=f"{a}~{b}",
            marks=pytest.mark.skipif(
                not (BACKENDS[a].is_installed() and BACKENDS[b].is_installed()), reason="not installed"
            ),
        )
        for a, b in itertools.combinations(BACKENDS, 2)
    ]


def to_numpy(value: Any) -> Any:
    """Tensors -> NumPy, tuples of tensors -> lists of NumPy."""
    if isinstance(value, tuple | list):
        return [to_numpy(v) for v in value]
    if hasattr(value, "detach"):
        value = value.detach().cpu().float() if str(value.dtype) == "torch.bfloat16" else value.detach().cpu()
    return np.asarray(value, dtype=np.float32) if np.asarray(value).dtype.name == "bfloat16" else np.asarray(value)


def outputs(out: Any) -> dict[str, Any]:
    """The comparable fields of a model output (the cache's layout differs between backends by design)."""
    return {key: to_numpy(out[key]) for key in out if key != "past_key_values"}


class TorchRunner:
    def load(self, kind: str, directory: Any, dtype: str = "float32") -> Any:
        import torch

        import whisper_pt

        return getattr(whisper_pt, kind).from_pretrained(directory, torch_dtype=getattr(torch, dtype)).eval()

    def _tensors(self, inputs: dict[str, Any], model: Any) -> dict[str, Any]:
        import torch

        converted = {}
        for key, value in inputs.items():
            tensor = torch.from_numpy(np.asarray(value)) if isinstance(value, np.ndarray) else value
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                tensor = tensor.to(model.dtype)
            converted[key] = tensor
        return converted

    def forward(self, model: Any, **inputs: Any) -> dict[str, Any]:
        import torch

        with torch.no_grad():
            return outputs(model(**self._tensors(inputs, model)))

    def gradients(self, model: Any, **inputs: Any) -> dict[str, np.ndarray]:
        model.zero_grad()
        model(**self._tensors(inputs, model)).loss.backward()
        grads = {name: p.grad.numpy() for name, p in model.named_parameters() if p.grad is not None}
        if any(name.startswith("model.") for name in grads):
            return grads
        # WhisperModel / classification: canonical names put the encoder and decoder under "model."
        return {("model." + n if n.startswith(("encoder.", "decoder.")) else n): g for n, g in grads.items()}

    def generate(self, model: Any, features: np.ndarray, **kwargs: Any) -> np.ndarray:
        import torch

        return model.generate(torch.from_numpy(features), **kwargs).numpy()

    def seeded(self, seed: int) -> dict[str, Any]:
        return {"seed": seed}

    def detect_language(self, model: Any, features: np.ndarray) -> list[dict[str, float]]:
        import torch

        return model.detect_language(torch.from_numpy(features), return_probabilities=True)


class FlaxRunner:
    def load(self, kind: str, directory: Any, dtype: str = "float32") -> Any:
        import whisper_flax

        return getattr(whisper_flax, "Flax" + kind).from_pretrained(directory, dtype=dtype)

    def forward(self, model: Any, **inputs: Any) -> dict[str, Any]:
        return outputs(model(**inputs))

    def gradients(self, model: Any, **inputs: Any) -> dict[str, np.ndarray]:
        import jax

        from whisper_flax.checkpoint import canonical_tensors

        grads = jax.grad(lambda params: model(**inputs, params=params).loss)(model.params)
        return canonical_tensors(grads, model.config)

    def generate(self, model: Any, features: np.ndarray, **kwargs: Any) -> np.ndarray:
        return np.asarray(model.generate(features, **kwargs))

    def seeded(self, seed: int) -> dict[str, Any]:
        import jax

        return {"prng_key": jax.random.PRNGKey(seed)}

    def detect_language(self, model: Any, features: np.ndarray) -> list[dict[str, float]]:
        return model.detect_language(features, return_probabilities=True)


class TFRunner:
    def load(self, kind: str, directory: Any, dtype: str = "float32") -> Any:
        import whisper_tf

        return getattr(whisper_tf, "TF" + kind).from_pretrained(directory, dtype=dtype)

    def forward(self, model: Any, **inputs: Any) -> dict[str, Any]:
        return outputs(model(**inputs, training=False))

    def gradients(self, model: Any, **inputs: Any) -> dict[str, np.ndarray]:
        import tensorflow as tf

        from whisper_tf.checkpoint import model_variables

        variables = model_variables(model)  # path -> variable
        with tf.GradientTape() as tape:
            loss = model(**inputs, training=False).loss
        grads = tape.gradient(loss, list(variables.values()))
        return model.canonical_tensors({path: g for path, g in zip(variables, grads, strict=True) if g is not None})

    def generate(self, model: Any, features: np.ndarray, **kwargs: Any) -> np.ndarray:
        return np.asarray(model.generate(features, **kwargs))

    def seeded(self, seed: int) -> dict[str, Any]:
        return {"seed": seed}

    def detect_language(self, model: Any, features: np.ndarray) -> list[dict[str, float]]:
        return model.detect_language(features, return_probabilities=True)


# The encoder's sinusoidal table is fixed in PyTorch and TensorFlow (no gradient) but a parameter in
# Flax, as in transformers; it is left out of gradient comparisons.
FIXED = "model.encoder.embed_positions.weight"


def trainable_gradients(gradients: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: grad for name, grad in gradients.items() if name != FIXED}


RUNNERS = {"pt": TorchRunner(), "flax": FlaxRunner(), "tf": TFRunner()}
# Half-precision logits, as a fraction of the float32 logits' largest magnitude: float16 keeps 11
# significant bits and bfloat16 8, and the error grows through the layers (measured on random configs
# and on the real tiny.en).
HALF_TOL = {"float16": 1e-2, "bfloat16": 5e-2}


def assert_close(name: str, a: Any, b: Any, tolerance: float, relative: bool = False) -> None:
    """``a`` and ``b`` (arrays or lists of arrays) within ``tolerance``; ``relative`` scales it by ``b``'s
    largest magnitude (for values that grow large, such as hidden states of scaled random weights)."""
    if isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b), name
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(f"{name}[{i}]", x, y, tolerance, relative)
        return
    scale = max(1.0, float(np.abs(np.asarray(b, np.float64)).max())) if relative else 1.0
    difference = max_abs(a, b)
    assert difference <= tolerance * scale, f"{name}: max abs difference {difference:.3g} > {tolerance * scale:.3g}"


def assert_gradients_close(first: dict[str, np.ndarray], second: dict[str, np.ndarray], tolerance: float) -> None:
    """Same tensors, each within ``tolerance`` relative error in norm: ``|a - b| / |b|`` (L2 over the
    tensor). The largest single element is no measure here: in float32, elements far below a tensor's
    scale carry rounding of the order of the scale."""
    assert sorted(first) == sorted(second)
    for name in second:
        a, b = first[name].astype(np.float64), second[name].astype(np.float64)
        error = float(np.linalg.norm(a - b)) / max(float(np.linalg.norm(b)), 1e-30)
        assert error <= tolerance, f"{name}: relative error {error:.3g} > {tolerance:g}"
