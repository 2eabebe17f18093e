"""Each backend's side of the transcription engine's :class:`~whisper_core.transcribe.ModelBackend`.

The engine in :mod:`whisper_core.transcribe` calls a model only through ``ModelBackend``; what differs
between frameworks is how a NumPy array becomes a tensor where the model lives, how sampling is seeded,
and (for JAX and TensorFlow) how the word-timing pass is compiled. Frameworks are imported inside the
methods, so this module loads none of them.
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

    def forward_attentions(
        self,
        features: np.ndarray,
        tokens: np.ndarray,
        heads: Sequence[Sequence[int]],
        states: Any = None,
        logits: bool = True,
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """The features in the model's dtype (float16 / bfloat16 compute types), the results in float32
        (NumPy has no bfloat16)."""
        import torch

        with torch.inference_mode():
            if states is None:
                states = self.model.encoder_states(self.tensor(features).to(self.model.dtype))
            ids = self.tensor(tokens)
            if logits:
                out = self.model(encoder_outputs=(states,), decoder_input_ids=ids, output_attentions=True)
            else:
                out = self.model.get_decoder()(input_ids=ids, encoder_hidden_states=states, output_attentions=True)
            weights = torch.stack([out.cross_attentions[layer][0, head] for layer, head in heads])
            return (to_numpy(out.logits[0].float()) if logits else None), to_numpy(weights.float())


class FlaxBackend(ModelBackend):
    name = "flax"
    bucket_prefix = True

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self._forward: dict[tuple[int, ...], Any] = {}
        self._take: Any = None

    def tensor(self, values: np.ndarray) -> Any:
        from whisper_flax.generation import on_device

        return on_device(values)

    def take_rows(self, states: Any, rows: Sequence[int]) -> Any:
        """``states[rows]`` as one compiled gather per row count: indexing a device array with a NumPy
        index ran six small programs, each compiled afresh in every process."""
        import jax

        if self._take is None:
            self._take = jax.jit(lambda states, rows: states[rows])
        return self._take(states, np.asarray(rows, np.int32))

    def join_rows(self, parts: Sequence[Any]) -> Any:
        import jax.numpy as jnp

        return jnp.concatenate(list(parts))

    def sampling_kwargs(self, seed: int) -> dict[str, Any]:
        import jax

        return {"prng_key": jax.random.PRNGKey(seed)}

    def forward_attentions(
        self,
        features: np.ndarray,
        tokens: np.ndarray,
        heads: Sequence[Sequence[int]],
        states: Any = None,
        logits: bool = True,
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """One jitted pass per head set (and per input: features, or encoder ``states`` for the decoder
        alone; with or without logits, which XLA then never computes); tokens are right-padded to a
        multiple of 32 so that few lengths compile (the decoder is causal: padding after the real tokens
        changes nothing before them)."""
        import jax
        import jax.numpy as jnp

        from whisper_flax.generation import on_device

        key = (tuple(map(tuple, heads)), states is None, logits)
        if key not in self._forward:

            def run(params: Any, audio: Any, ids: Any) -> tuple[Any, Any]:
                if states is None:
                    out = self.model(audio, ids, params=params, output_attentions=True)
                else:
                    out = self.model.decode(ids, (audio,), params=params, output_attentions=True)
                weights = jnp.stack([out.cross_attentions[layer][0, head] for layer, head in heads])
                return (out.logits if logits else None), weights

            self._forward[key] = jax.jit(run)
        length = tokens.shape[1]
        padded = np.pad(tokens, ((0, 0), (0, -length % 32)), constant_values=self.generation_config.eos_token_id)
        audio = on_device(features) if states is None else states
        values, weights = self._forward[key](self.model.params, audio, on_device(padded))
        return (_float32(values)[0, :length] if logits else None), _float32(weights)[:, :length]


class TFBackend(ModelBackend):
    name = "tf"
    bucket_prefix = True

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self._forward: dict[tuple[Any, ...], Any] = {}

    def tensor(self, values: np.ndarray) -> Any:
        import tensorflow as tf

        return tf.convert_to_tensor(values)

    def take_rows(self, states: Any, rows: Sequence[int]) -> Any:
        import tensorflow as tf

        return tf.gather(states, list(rows))

    def join_rows(self, parts: Sequence[Any]) -> Any:
        import tensorflow as tf

        return tf.concat(list(parts), axis=0)

    def forward_attentions(
        self,
        features: np.ndarray,
        tokens: np.ndarray,
        heads: Sequence[Sequence[int]],
        states: Any = None,
        logits: bool = True,
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """One graph per head set, input and logits flag (``reduce_retracing``: after its second token
        count, one trace serves every count). Run op by op, a streaming word-timing pass on base took
        350-420 ms, as a graph 80-105 ms (PyTorch: 95-115 ms); XLA ran no faster and compiled longer."""
        import tensorflow as tf

        key = (tuple(map(tuple, heads)), states is None, logits)
        if key not in self._forward:

            def run(audio: Any, ids: Any) -> tuple[Any, Any]:
                if states is None:
                    out = self.model(input_features=audio, decoder_input_ids=ids, output_attentions=True)
                elif logits:
                    out = self.model(encoder_outputs=(audio,), decoder_input_ids=ids, output_attentions=True)
                else:
                    out = self.model.get_decoder()(input_ids=ids, encoder_hidden_states=audio, output_attentions=True)
                weights = tf.stack([out.cross_attentions[layer][0, head] for layer, head in heads])
                return (out.logits if logits else None), weights

            # traced as written (no Python control flow on tensors): AutoGraph's rewrite would only cost time
            self._forward[key] = tf.function(run, reduce_retracing=True, autograph=False)
        audio = tf.convert_to_tensor(features) if states is None else states
        values, weights = self._forward[key](audio, tf.convert_to_tensor(tokens))
        return (_float32(values)[0] if logits else None), _float32(weights)


def _float32(x: Any) -> np.ndarray:
    """A tensor of a float16 / bfloat16 compute type as float32 NumPy, for the engine's NumPy code."""
    return to_numpy(x).astype(np.float32)
