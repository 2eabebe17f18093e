"""Each backend's side of the transcription engine's :class:`~whisper_core.transcribe.ModelBackend`.

The engine in :mod:`whisper_core.transcribe` calls a model only through ``ModelBackend``; what differs
between frameworks is how a NumPy array becomes a tensor where the model lives, how sampling is seeded,
and (for JAX) how the word-timing pass is compiled. Frameworks are imported inside the methods, so this
module loads none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from whisper_core.transcribe.backends import ModelBackend, to_numpy


class TorchBackend(ModelBackend):
    name = "pt"

    def tensor(self, values: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(np.ascontiguousarray(values)).to(self.model.device)

    def sampling_kwargs(self, seed: int) -> dict[str, Any]:
        import torch

        return {"generator": torch.Generator(device=self.model.device).manual_seed(seed)}

    def forward_attentions(
        self, features: np.ndarray, tokens: np.ndarray, heads: Sequence[Sequence[int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The features in the model's dtype (float16 / bfloat16 compute types), the results in float32
        (NumPy has no bfloat16)."""
        import torch

        with torch.inference_mode():
            out = self.model(
                input_features=self.tensor(features).to(self.model.dtype),
                decoder_input_ids=self.tensor(tokens),
                output_attentions=True,
            )
            weights = torch.stack([out.cross_attentions[layer][0, head] for layer, head in heads])
            return to_numpy(out.logits[0].float()), to_numpy(weights.float())


class FlaxBackend(ModelBackend):
    name = "flax"
    bucket_prefix = True

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self._forward: dict[tuple[int, ...], Any] = {}

    def tensor(self, values: np.ndarray) -> Any:
        import jax.numpy as jnp

        return jnp.asarray(values)

    def sampling_kwargs(self, seed: int) -> dict[str, Any]:
        import jax

        return {"prng_key": jax.random.PRNGKey(seed)}

    def forward_attentions(
        self, features: np.ndarray, tokens: np.ndarray, heads: Sequence[Sequence[int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """One jitted pass per head set; tokens are right-padded to a multiple of 32 so that few lengths
        compile (the decoder is causal: padding after the real tokens changes nothing before them)."""
        import jax
        import jax.numpy as jnp

        key = tuple(map(tuple, heads))
        if key not in self._forward:

            def run(params: Any, features: Any, ids: Any) -> tuple[Any, Any]:
                out = self.model(features, ids, params=params, output_attentions=True)
                weights = jnp.stack([out.cross_attentions[layer][0, head] for layer, head in heads])
                return out.logits, weights

            self._forward[key] = jax.jit(run)
        length = tokens.shape[1]
        padded = np.pad(tokens, ((0, 0), (0, -length % 32)), constant_values=self.generation_config.eos_token_id)
        logits, weights = self._forward[key](self.model.params, jnp.asarray(features), jnp.asarray(padded))
        return _float32(logits)[0, :length], _float32(weights)[:, :length]


class TFBackend(ModelBackend):
    name = "tf"
    bucket_prefix = True

    def tensor(self, values: np.ndarray) -> Any:
        import tensorflow as tf

        return tf.convert_to_tensor(values)

    def sampling_kwargs(self, seed: int) -> dict[str, Any]:
        return {"seed": seed}

    def take_rows(self, states: Any, rows: Sequence[int]) -> Any:
        import tensorflow as tf

        return tf.gather(states, list(rows))

    def forward_attentions(
        self, features: np.ndarray, tokens: np.ndarray, heads: Sequence[Sequence[int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        logits, weights = super().forward_attentions(features, tokens, heads)
        return _float32(logits), _float32(weights)


def _float32(x: Any) -> np.ndarray:
    """A tensor of a float16 / bfloat16 compute type as float32 NumPy, for the engine's NumPy code."""
    return to_numpy(x).astype(np.float32)
