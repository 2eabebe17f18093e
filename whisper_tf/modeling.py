"""TensorFlow (Keras 3) Whisper with the transformers 4.57 TF API and variable names.

Every sublayer is named as in transformers' ``TFWhisperForConditionalGeneration``, so a variable's
path below the model's own name (``model/encoder/layers.0/self_attn/q_proj/kernel``) is its
``hf_tf`` name in :mod:`weights_bridge.rules` and loading is a table lookup (``checkpoint.py``).
The LM head is the transposed token embedding (no ``proj_out`` variable). Unlike transformers'
growing tuples, the KV cache is an explicit fixed-size :class:`~whisper_tf.outputs.KVCache` with a
write index, passed in and returned, so one decoder step compiles once under XLA (``generation.py``).

Numerics: q is scaled by ``head_dim**-0.5`` before ``q @ k^T`` (as transformers and openai/whisper);
LayerNorm and softmax run in float32 whatever the layers' dtype policy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from weights_bridge import pretrained
from whisper_core import modeling_rules
from whisper_core.config import WhisperConfig
from whisper_core.generation_config import GenerationConfig
from whisper_core.modeling_rules import check_labels_length, config_flag
from whisper_core.outputs import as_encoder_output

from .checkpoint import CheckpointMixin
from .generation import TFWhisperGenerationMixin
from .outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    KVCache,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
)
from .training import TFWhisperTrainingMixin

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"whisper_tf needs Keras on the TensorFlow backend, but KERAS_BACKEND is {keras.backend.backend()!r}: "
        "set KERAS_BACKEND=tensorflow before importing keras"
    )


def _gelu_new(x: tf.Tensor) -> tf.Tensor:
    return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3.0))))


def _gelu_fast(x: tf.Tensor) -> tf.Tensor:
    return 0.5 * x * (1.0 + tf.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


# The formulas transformers' ACT2FN uses for each ``config.activation_function`` name.
ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "gelu": lambda x: tf.nn.gelu(x, approximate=False),
    "gelu_new": _gelu_new,
    "gelu_fast": _gelu_fast,
    "gelu_pytorch_tanh": lambda x: tf.nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * tf.sigmoid(1.702 * x),
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
}


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> np.ndarray:
    """The encoder's fixed position table ``[length, channels]`` (:func:`whisper_core.modeling_rules.sinusoids`)
    in NumPy float32 (the Keras initializer casts it to the layer's dtype)."""
    return modeling_rules.sinusoids(length, channels, max_timescale, xp=np)


def shift_tokens_right(input_ids: tf.Tensor, pad_token_id: int, decoder_start_token_id: int) -> tf.Tensor:
    """Teacher-forcing decoder inputs from labels ``[batch, seq]``: prepend the start token, drop the last
    token, and turn the loss-ignore value -100 into ``pad_token_id`` (it is not a valid token id)."""
    if pad_token_id is None:
        raise ValueError("config.pad_token_id must be set to build decoder inputs from labels")
    input_ids = tf.convert_to_tensor(input_ids)
    start = tf.fill((tf.shape(input_ids)[0], 1), tf.constant(decoder_start_token_id, input_ids.dtype))
    shifted = tf.concat([start, input_ids[:, :-1]], axis=1)
    return tf.where(shifted == -100, tf.constant(pad_token_id, input_ids.dtype), shifted)


def _compute_mask_indices(
    batch_size: Any,
    length: int,
    mask_prob: float,
    mask_length: int,
    min_masks: int = 0,
    lengths: tf.Tensor | None = None,
) -> tf.Tensor:
    """SpecAugment spans: a bool mask ``[batch, length]`` of ``mask_length``-long spans (they may overlap).

    transformers' rule, drawn with TF ops so it runs inside ``fit``'s compiled step: a row of ``n`` real
    frames (``lengths [batch]``, right padding; default all) gets ``int(mask_prob * n / mask_length + u)``
    spans with one ``u ~ U[0, 1)`` per call, at least ``min_masks``, at most what fits in ``n``; span
    starts are distinct real frames (the lowest ranks of a uniform draw, padding ranked last). The
    random stream is TensorFlow's, so masks differ from transformers' NumPy draws.
    """
    if mask_length < 1:
        raise ValueError("mask_length must be at least 1")
    if mask_length > length:
        raise ValueError(f"mask_length ({mask_length}) must not exceed the masked axis length ({length})")
    epsilon = tf.random.uniform([])
    lengths = tf.fill([batch_size], length) if lengths is None else tf.minimum(tf.cast(lengths, tf.int32), length)
    valid_starts = tf.maximum(lengths - mask_length + 1, 0)[:, None]  # [b, 1]
    spans = tf.cast(tf.floor(mask_prob * tf.cast(lengths, tf.float32) / mask_length + epsilon), tf.int32)[:, None]
    spans = tf.minimum(tf.minimum(tf.maximum(spans, min_masks), length // mask_length), valid_starts)
    starts = length - mask_length + 1
    draws = tf.where(tf.range(starts)[None, :] < valid_starts, tf.random.uniform((batch_size, starts)), 2.0)
    ranks = tf.argsort(tf.argsort(draws, axis=-1), axis=-1)  # [b, starts]: padding ranks last
    chosen = tf.pad(tf.cast(ranks < spans, tf.int32), [[0, 0], [0, mask_length - 1]])  # [b, length]
    # Frame t is masked when a chosen start lies in (t - mask_length, t].
    started = tf.cumsum(chosen, axis=-1)
    before = tf.pad(started, [[0, 0], [mask_length, 0]])[:, :length]
    return started - before > 0


class LayerNorm(keras.layers.LayerNormalization):
    """LayerNorm computed in float32 and cast back, so float16/bfloat16 models keep precise statistics.

    Subclassed (not wrapped) so the variables stay at ``<name>/gamma`` and ``<name>/beta``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(epsilon=1e-5, **kwargs)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        x32 = tf.cast(x, tf.float32)
        mean, variance = tf.nn.moments(x32, axes=[-1], keepdims=True)
        y = (x32 - mean) * tf.math.rsqrt(variance + self.epsilon)
        y = y * tf.cast(self.gamma, tf.float32) + tf.cast(self.beta, tf.float32)
        return tf.cast(y, x.dtype)


def decoder_attention_mask(q_len: Any, kv_len: Any, offset: Any, padding_mask: tf.Tensor | None) -> tf.Tensor:
    """Bool mask ``[batch or 1, 1, q_len, kv_len]``, True where a query may attend.

    Query ``i`` sits at absolute position ``offset + i`` (``offset`` is the cache index, possibly
    traced) and sees keys up to it (causal); that also hides cache slots not yet written. Keys whose
    ``padding_mask [batch, kv_len]`` is 0 are hidden too.
    """
    query_pos = offset + tf.range(q_len)[:, None]  # [q_len, 1]
    mask = (tf.range(kv_len)[None, :] <= query_pos)[None, None]  # [1, 1, q_len, kv_len]
    if padding_mask is not None:
        mask = mask & (padding_mask[:, None, None, :] > 0)
    return mask


def attend(
    q: tf.Tensor,
    k: tf.Tensor,
    v: tf.Tensor,
    mask: tf.Tensor | None,
    dropout: keras.layers.Dropout,
    training: bool,
    head_scale: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """softmax(q k^T) v with ``q [..., T, hd]`` already scaled, ``k, v [..., S, hd]``, bool ``mask``
    broadcastable to ``[..., T, S]``; the leading dims are ``[b, h]``, or ``[b * h]`` over the cache.

    Masked scores become the dtype's minimum rather than -inf (as transformers' additive mask does), so
    a query that sees nothing (a left-padding token) gets finite weights instead of NaN, which would
    otherwise leak into real rows through the next layer. ``head_scale`` (broadcastable to the weights)
    scales each head's weights (0 silences a head). Returns ``(out [..., T, hd], weights)``.
    """
    scores = tf.matmul(q, k, transpose_b=True)  # [b, h, T, S]
    if mask is not None:
        scores = tf.where(mask, scores, scores.dtype.min)
    weights = tf.cast(tf.nn.softmax(tf.cast(scores, tf.float32), axis=-1), q.dtype)
    if head_scale is not None:
        weights = weights * tf.cast(head_scale, weights.dtype)
    return tf.matmul(dropout(weights, training=training), v), weights


def _build(layer: keras.layers.Layer, input_shape: Any = None) -> None:
    """Create ``layer``'s variables unless it has them: a Keras layer built twice makes them twice."""
    if not layer.built:
        layer.build(input_shape)


def _build_for_width(width: int, *layers: keras.layers.Layer) -> None:
    """Create ``layers``' variables for inputs whose last axis has ``width`` features."""
    for layer in layers:
        _build(layer, (None, width))


class Unfilled(keras.initializers.Initializer):
    """Memory for a weight that a checkpoint's value replaces before anything reads it, left as it is."""

    def __call__(self, shape: Any, dtype: Any = None) -> tf.Tensor:
        return tf.raw_ops.Empty(shape=shape, dtype=tf.as_dtype(dtype or "float32"), init=False)


def random_normal(std: float) -> keras.initializers.Initializer:
    """The weights' initializer: normal at ``std``, or :class:`Unfilled` while a checkpoint's weights are about
    to be assigned (:func:`weights_bridge.pretrained.weights_to_come`): drawing base's 72 M random values took
    0.9 s of every load (2026-12-06), and filling them with zeros about 0.15 s (2026-12-07)."""
    return Unfilled() if pretrained.weights_to_come() else keras.initializers.RandomNormal(stddev=std)


def _dense(units: int, init_std: float, dtype: Any, name: str, use_bias: bool = True) -> keras.layers.Dense:
    init = random_normal(init_std)
    return keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=init, dtype=dtype, name=name)


class TFWhisperAttention(keras.layers.Layer):
    """Multi-head attention; self-attention when ``key_value_states`` is None, else cross-attention."""

    def __init__(
        self, embed_dim: int, num_heads: int, dropout: float = 0.0, init_std: float = 0.02, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim**-0.5
        dtype = self.dtype_policy
        self.k_proj = _dense(embed_dim, init_std, dtype, "k_proj", use_bias=False)  # Whisper's k has no bias
        self.v_proj = _dense(embed_dim, init_std, dtype, "v_proj")
        self.q_proj = _dense(embed_dim, init_std, dtype, "q_proj")
        self.out_proj = _dense(embed_dim, init_std, dtype, "out_proj")
        self.dropout = keras.layers.Dropout(dropout, dtype=dtype)

    def build(self, input_shape: Any = None) -> None:
        """Every projection maps ``embed_dim`` features (cross-attention's keys/values come from encoder
        states of the same width)."""
        _build_for_width(self.embed_dim, self.q_proj, self.k_proj, self.v_proj, self.out_proj)

    def _split_heads(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.reshape(x, (_dim(x, 0), _dim(x, 1), self.num_heads, self.head_dim))
        return tf.transpose(x, (0, 2, 1, 3))  # [b, s, d] -> [b, h, s, hd]

    def project_key_value(self, states: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``states [b, S, d]`` -> ``(k, v)`` each ``[b, h, S, hd]``."""
        return self._split_heads(self.k_proj(states)), self._split_heads(self.v_proj(states))

    def cache_key_value(self, states: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``states [b, S, d]`` -> ``(k, v)`` each ``[b * h, S, hd]``, the :class:`KVCache` layout
        (cross-attention caches these once)."""
        k, v = self.project_key_value(states)
        return _head_rows(k), _head_rows(v)

    def call(
        self,
        hidden_states: tf.Tensor,
        key_value_states: tf.Tensor | None = None,
        past_key_value: tuple[tf.Tensor, tf.Tensor] | None = None,
        cache_index: Any = None,
        attention_mask: tf.Tensor | None = None,
        layer_head_mask: tf.Tensor | None = None,
        training: bool = False,
    ) -> tuple[tf.Tensor, tf.Tensor, tuple[tf.Tensor, tf.Tensor]]:
        """``hidden_states [b, T, d]`` -> ``(out [b, T, d], weights [b, h, T, S], (k, v))``.

        Self-attention writes this step's k/v into the fixed-size ``past_key_value`` at ``cache_index``.
        Cross-attention is a call with ``key_value_states [b, S, d]`` or with a ``past_key_value`` but no
        ``cache_index``: it reuses the cached k/v when given (the encoder output does not change while
        decoding), else projects ``key_value_states``. The returned (k, v) is the cache for next time:
        ``[b * h, S, hd]`` when a cache was given (see :class:`KVCache`), else ``[b, h, S, hd]``.
        """
        shape = _dims(hidden_states)
        q = self._split_heads(self.q_proj(hidden_states) * self.scaling)
        if past_key_value is not None and cache_index is None:  # cross-attention over the cached encoder k/v
            k, v = past_key_value
        elif key_value_states is not None:
            k, v = self.project_key_value(key_value_states)
        else:
            k, v = self.project_key_value(hidden_states)
            if past_key_value is not None:
                start = tf.stack([0, tf.cast(cache_index, tf.int32), 0])
                k = xla.dynamic_update_slice(past_key_value[0], tf.cast(_head_rows(k), past_key_value[0].dtype), start)
                v = xla.dynamic_update_slice(past_key_value[1], tf.cast(_head_rows(v), past_key_value[1].dtype), start)
        head_scale = None if layer_head_mask is None else tf.reshape(layer_head_mask, (1, -1, 1, 1))  # [1, h, 1, 1]
        if past_key_value is None:
            out, weights = attend(q, k, v, attention_mask, self.dropout, training, head_scale)
        elif _shares_rows(hidden_states, k, self.num_heads):  # copies of each cached input share its k/v
            out, weights = self._attend_copies(q, k, v, attention_mask, training, head_scale)
        else:  # over the cache, one row per (batch row, head)

            def rows(x: tf.Tensor, *tail: Any) -> tf.Tensor:
                return _head_rows(tf.broadcast_to(x, [shape[0], self.num_heads, *tail]))

            if attention_mask is not None:
                attention_mask = rows(attention_mask, shape[1], _dim(k, 1))
            if head_scale is not None:
                head_scale = rows(head_scale, 1, 1)
            out, weights = attend(_head_rows(q), k, v, attention_mask, self.dropout, training, head_scale)
            heads = [shape[0], self.num_heads, shape[1], -1]
            out, weights = tf.reshape(out, heads), tf.reshape(weights, heads)
        out = tf.reshape(tf.transpose(out, (0, 2, 1, 3)), (shape[0], shape[1], self.embed_dim))  # -> [b, T, d]
        return self.out_proj(out), weights, (k, v)

    def _attend_copies(
        self,
        q: tf.Tensor,
        k: tf.Tensor,
        v: tf.Tensor,
        attention_mask: tf.Tensor | None,
        training: bool,
        head_scale: tf.Tensor | None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Cross-attention of ``q [b, h, T, hd]`` over a cache of ``inputs < b`` rows ``[inputs * h, S, hd]``,
        the batch rows coming in blocks of ``b / inputs`` copies of each input (``best_of`` draws, beams):
        each input's copies attend as one block of queries, so its keys/values are read once a step, not
        once per copy. Returns ``(out, weights)`` as ``[b, h, T, ...]``."""
        if attention_mask is not None:
            raise ValueError("cross-attention shared by copies takes no attention mask")
        heads, head_dim, steps = self.num_heads, self.head_dim, _dim(q, 2)
        inputs = k.shape[0] // heads
        copies = q.shape[0] // inputs
        grouped = tf.transpose(tf.reshape(q, (inputs, copies, heads, steps, head_dim)), (0, 2, 1, 3, 4))
        if head_scale is not None:
            head_scale = _head_rows(tf.broadcast_to(head_scale, (inputs, heads, 1, 1)))
        out, weights = attend(
            tf.reshape(grouped, (inputs * heads, copies * steps, head_dim)),
            k,
            v,
            None,
            self.dropout,
            training,
            head_scale,
        )

        def ungroup(x: tf.Tensor) -> tf.Tensor:  # [inputs * h, copies * T, n] -> [b, h, T, n]
            x = tf.transpose(tf.reshape(x, (inputs, heads, copies, steps, -1)), (0, 2, 1, 3, 4))
            return tf.reshape(x, (inputs * copies, heads, steps, -1))

        return ungroup(out), ungroup(weights)


def _shares_rows(hidden_states: tf.Tensor, cached: tf.Tensor, heads: int) -> bool:
    """Whether a cache of ``[rows * heads, S, hd]`` serves more batch rows than it has (known shapes only)."""
    batch, rows = hidden_states.shape[0], cached.shape[0]
    return batch is not None and rows is not None and rows // heads != batch


def _head_rows(x: tf.Tensor) -> tf.Tensor:
    """``[b, h, ...]`` -> ``[b * h, ...]``, the :class:`KVCache` layout."""
    shape = _dims(x)
    return tf.reshape(x, [shape[0] * shape[1], *shape[2:]])


class TFWhisperEncoderLayer(keras.layers.Layer):
    """Pre-norm block: x + SelfAttn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: WhisperConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        d, dtype = config.d_model, self.dtype_policy
        self.self_attn = TFWhisperAttention(
            d, config.encoder_attention_heads, config.attention_dropout, config.init_std, dtype=dtype, name="self_attn"
        )
        self.self_attn_layer_norm = LayerNorm(dtype=dtype, name="self_attn_layer_norm")
        self.dropout = keras.layers.Dropout(config.dropout, dtype=dtype)
        self.activation_fn = ACTIVATIONS[config.activation_function]
        self.activation_dropout = keras.layers.Dropout(config.activation_dropout, dtype=dtype)
        self.fc1 = _dense(config.encoder_ffn_dim, config.init_std, dtype, "fc1")
        self.fc2 = _dense(d, config.init_std, dtype, "fc2")
        self.final_layer_norm = LayerNorm(dtype=dtype, name="final_layer_norm")

    def build(self, input_shape: Any = None) -> None:
        _build(self.self_attn)
        _build_for_width(self.self_attn.embed_dim, self.self_attn_layer_norm, self.final_layer_norm, self.fc1)
        _build_for_width(self.fc1.units, self.fc2)

    def call(
        self, x: tf.Tensor, layer_head_mask: tf.Tensor | None = None, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        h, weights, _ = self.self_attn(self.self_attn_layer_norm(x), layer_head_mask=layer_head_mask, training=training)
        x = x + self.dropout(h, training=training)
        h = self.activation_dropout(self.activation_fn(self.fc1(self.final_layer_norm(x))), training=training)
        x = x + self.dropout(self.fc2(h), training=training)
        if x.dtype == tf.float16:  # as transformers' PyTorch model: keep fp16 activations finite
            limit = float(np.finfo(np.float16).max) - 1000
            x = tf.clip_by_value(x, -limit, limit)
        return x, weights


class TFWhisperDecoderLayer(keras.layers.Layer):
    """Pre-norm block: causal self-attention, cross-attention to the encoder, MLP."""

    def __init__(self, config: WhisperConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        d, heads, dtype = config.d_model, config.decoder_attention_heads, self.dtype_policy
        attention = (config.attention_dropout, config.init_std)
        self.self_attn = TFWhisperAttention(d, heads, *attention, dtype=dtype, name="self_attn")
        self.dropout = keras.layers.Dropout(config.dropout, dtype=dtype)
        self.activation_fn = ACTIVATIONS[config.activation_function]
        self.activation_dropout = keras.layers.Dropout(config.activation_dropout, dtype=dtype)
        self.self_attn_layer_norm = LayerNorm(dtype=dtype, name="self_attn_layer_norm")
        self.encoder_attn = TFWhisperAttention(d, heads, *attention, dtype=dtype, name="encoder_attn")
        self.encoder_attn_layer_norm = LayerNorm(dtype=dtype, name="encoder_attn_layer_norm")
        self.fc1 = _dense(config.decoder_ffn_dim, config.init_std, dtype, "fc1")
        self.fc2 = _dense(d, config.init_std, dtype, "fc2")
        self.final_layer_norm = LayerNorm(dtype=dtype, name="final_layer_norm")

    def build(self, input_shape: Any = None) -> None:
        _build(self.self_attn)
        _build(self.encoder_attn)
        norms = (self.self_attn_layer_norm, self.encoder_attn_layer_norm, self.final_layer_norm)
        _build_for_width(self.self_attn.embed_dim, *norms, self.fc1)
        _build_for_width(self.fc1.units, self.fc2)

    def call(
        self,
        x: tf.Tensor,
        attention_mask: tf.Tensor | None = None,
        encoder_hidden_states: tf.Tensor | None = None,
        layer_head_mask: tf.Tensor | None = None,
        cross_attn_layer_head_mask: tf.Tensor | None = None,
        past_key_value: tuple[tf.Tensor, ...] | None = None,
        cache_index: Any = None,
        training: bool = False,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None, tuple[tf.Tensor, ...]]:
        """``x [b, T, d]`` -> ``(x, self weights, cross weights, (self_k, self_v, cross_k, cross_v))``."""
        self_past = past_key_value[:2] if past_key_value is not None else None
        cross_past = past_key_value[2:] if past_key_value is not None else None
        h, self_weights, self_kv = self.self_attn(
            self.self_attn_layer_norm(x),
            past_key_value=self_past,
            cache_index=cache_index,
            attention_mask=attention_mask,
            layer_head_mask=layer_head_mask,
            training=training,
        )
        x = x + self.dropout(h, training=training)
        cross_weights, cross_kv = None, (None, None)
        if encoder_hidden_states is not None or cross_past is not None:
            h, cross_weights, cross_kv = self.encoder_attn(
                self.encoder_attn_layer_norm(x),
                key_value_states=encoder_hidden_states,
                past_key_value=cross_past,
                layer_head_mask=cross_attn_layer_head_mask,
                training=training,
            )
            x = x + self.dropout(h, training=training)
        h = self.activation_dropout(self.activation_fn(self.fc1(self.final_layer_norm(x))), training=training)
        x = x + self.dropout(self.fc2(h), training=training)
        return x, self_weights, cross_weights, (*self_kv, *cross_kv)


class TFWhisperPreTrainedModel(CheckpointMixin, keras.Model):
    """What every Whisper model shares: ``config``, eager weight creation, the KV cache entry point.

    The constructor builds every variable (``build``): a new model has all its weights (as in PyTorch and
    Flax), ready for ``from_canonical`` to fill.
    ``dtype`` is a Keras dtype policy ("float32", "float16", "bfloat16", "mixed_float16", ...).
    Checkpoint I/O (``from_pretrained``/``save_pretrained`` through ``weights_bridge``) comes from
    ``CheckpointMixin``.
    """

    config_class = WhisperConfig
    base_model_prefix = "model"
    main_input_name = "input_features"

    def __init__(self, config: WhisperConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not config.tie_word_embeddings:
            raise ValueError("whisper_tf ties proj_out to embed_tokens, as every Whisper checkpoint does")
        self.config = config

    def build(self, input_shape: Any = None) -> None:
        """Create every weight from the config's widths, as PyTorch and Flax do, without running anything:
        each composite layer builds its sublayers. Calling the model once on two mel frames and one token
        instead cost 1.0 s of building base under cProfile (2026-12-06), Keras' call machinery and ~1500
        eager operations."""
        _build(self.model)

    @property
    def dummy_inputs(self) -> dict[str, tf.Tensor]:
        """Smallest inputs that touch every layer: 30 s of silence, one decoder token."""
        return {
            "input_features": tf.zeros((1, self.config.num_mel_bins, 2 * self.config.max_source_positions), tf.float32),
            "decoder_input_ids": tf.fill((1, 1), self.config.decoder_start_token_id),
        }

    def _get_feat_extract_output_lengths(self, input_lengths: tf.Tensor) -> tf.Tensor:
        """Encoder output frames for ``input_lengths`` mel frames (conv2 has stride 2)."""
        return (input_lengths - 1) // 2 + 1

    def init_cache(self, batch_size: int, max_length: int, encoder_outputs: Any) -> KVCache:
        """An empty cache of ``max_length`` self-attention slots, with the cross-attention keys/values of
        ``encoder_outputs`` (``[batch_size, frames, d]`` first) projected once."""
        encoder_states = as_encoder_output(encoder_outputs, tf.convert_to_tensor).last_hidden_state
        if encoder_states.shape[0] is not None and encoder_states.shape[0] != batch_size:
            raise ValueError(f"encoder_outputs have batch {encoder_states.shape[0]}, the cache {batch_size}")
        if max_length > self.config.max_target_positions:
            raise ValueError(f"max_length {max_length} exceeds max_target_positions {self.config.max_target_positions}")
        return self.get_decoder().init_cache(encoder_states, max_length)


def _layer_drop(layerdrop: float, training: bool) -> tf.Tensor | None:
    """LayerDrop in training: a traced coin per layer (``None`` when off), so the layer is skipped by
    ``where`` rather than by Python control flow and the step stays compilable."""
    if not training or layerdrop <= 0.0:
        return None
    return tf.random.uniform([]) < layerdrop


class TFWhisperPositionalEmbedding(keras.layers.Layer):
    """A position table stored as ``<name>/weight`` (transformers' TF name), looked up by position id."""

    def __init__(self, num_positions: int, embedding_dim: int, initializer: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_positions, self.embedding_dim, self.initializer = num_positions, embedding_dim, initializer

    def build(self, input_shape: Any = None) -> None:
        self.weight = self.add_weight(
            name="weight", shape=(self.num_positions, self.embedding_dim), initializer=self.initializer
        )

    def call(self, position_ids: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.weight, position_ids)


class TFWhisperEncoder(keras.layers.Layer):
    """Two GELU convolutions (the second halves time), fixed sinusoidal positions, pre-norm layers."""

    def __init__(self, config: WhisperConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        d, dtype = config.d_model, self.dtype_policy
        init = random_normal(config.init_std)
        conv = {"kernel_size": 3, "padding": "valid", "kernel_initializer": init, "dtype": dtype}
        self.conv1 = keras.layers.Conv1D(d, strides=1, name="conv1", **conv)
        self.conv2 = keras.layers.Conv1D(d, strides=2, name="conv2", **conv)
        self.embed_positions = TFWhisperPositionalEmbedding(
            config.max_source_positions,
            d,
            lambda shape, dtype=None: tf.cast(sinusoids(*shape), dtype or tf.float32),
            dtype=dtype,
            name="embed_positions",
        )
        self.embed_positions.trainable = False  # sinusoids, not trained (as transformers)
        self.dropout = keras.layers.Dropout(config.dropout, dtype=dtype)
        self.layers = [
            TFWhisperEncoderLayer(config, dtype=dtype, name=f"layers.{i}") for i in range(config.encoder_layers)
        ]
        self.layer_norm = LayerNorm(dtype=dtype, name="layer_norm")

    def build(self, input_shape: Any = None) -> None:
        d = self.config.d_model
        _build(self.conv1, (None, None, self.config.num_mel_bins))
        _build(self.conv2, (None, None, d))
        _build(self.embed_positions)
        for layer in self.layers:
            _build(layer)
        _build_for_width(d, self.layer_norm)

    def call(
        self,
        input_features: tf.Tensor,
        attention_mask: tf.Tensor | None = None,
        head_mask: tf.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        training: bool = False,
    ) -> BaseModelOutput | tuple:
        """``input_features [b, num_mel_bins, 2 * max_source_positions]`` -> states ``[b, max_source_positions, d]``.

        The frame count must be exact: Whisper always sees 30 s of (padded) audio, which is why
        ``attention_mask`` is accepted for API compatibility and unused. ``head_mask [layers, heads]``.
        """
        _check_head_masks(len(self.layers), head_mask=head_mask)
        output_attentions = config_flag(output_attentions, self.config, "output_attentions")
        output_hidden_states = config_flag(output_hidden_states, self.config, "output_hidden_states")
        return_dict = config_flag(return_dict, self.config, "return_dict")
        expected_frames = 2 * self.config.max_source_positions
        if input_features.shape.rank != 3 or input_features.shape[1] != self.config.num_mel_bins:
            raise ValueError(
                f"Whisper expects input_features of shape (batch, {self.config.num_mel_bins}, {expected_frames}), "
                f"got {tuple(input_features.shape)}"
            )
        if input_features.shape[-1] != expected_frames:
            raise ValueError(
                f"Whisper expects the mel input features to be of length {expected_frames}, but found "
                f"{input_features.shape[-1]}. Make sure to pad the input mel features to {expected_frames}."
            )
        x = tf.transpose(tf.cast(input_features, self.compute_dtype), (0, 2, 1))  # [b, frames, mels]
        x = tf.nn.gelu(self.conv1(tf.pad(x, [[0, 0], [1, 1], [0, 0]])), approximate=False)  # [b, frames, d]
        x = tf.nn.gelu(self.conv2(tf.pad(x, [[0, 0], [1, 1], [0, 0]])), approximate=False)  # [b, frames / 2, d]
        x = self.dropout(x + self.embed_positions(tf.range(expected_frames // 2)), training=training)

        hidden_states, attentions = [], []
        for idx, layer in enumerate(self.layers):
            if output_hidden_states:
                hidden_states.append(x)
            y, weights = layer(x, layer_head_mask=head_mask[idx] if head_mask is not None else None, training=training)
            dropped = _layer_drop(self.config.encoder_layerdrop, training)
            x = y if dropped is None else tf.where(dropped, x, y)
            attentions.append(weights)
        x = self.layer_norm(x)
        hidden_states.append(x)
        out = BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )
        return out if return_dict else out.to_tuple()


class TFWhisperDecoder(keras.layers.Layer):
    """Token + learned position embeddings, pre-norm layers with causal self- and cross-attention."""

    def __init__(self, config: WhisperConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        d, dtype = config.d_model, self.dtype_policy
        init = random_normal(config.init_std)
        self.embed_tokens = keras.layers.Embedding(
            config.vocab_size, d, embeddings_initializer=init, dtype=dtype, name="embed_tokens"
        )
        self.embed_positions = TFWhisperPositionalEmbedding(
            config.max_target_positions, d, init, dtype=dtype, name="embed_positions"
        )
        self.dropout = keras.layers.Dropout(config.dropout, dtype=dtype)
        self.layers = [
            TFWhisperDecoderLayer(config, dtype=dtype, name=f"layers.{i}") for i in range(config.decoder_layers)
        ]
        self.layer_norm = LayerNorm(dtype=dtype, name="layer_norm")

    def build(self, input_shape: Any = None) -> None:
        _build(self.embed_tokens)
        _build(self.embed_positions)
        for layer in self.layers:
            _build(layer)
        _build_for_width(self.config.d_model, self.layer_norm)

    def init_cache(self, encoder_hidden_states: tf.Tensor, max_length: int) -> KVCache:
        """Empty self-attention slots ``[b * h, max_length, hd]`` plus each layer's cross-attention k/v."""
        heads = self.config.decoder_attention_heads
        states = tf.cast(encoder_hidden_states, self.compute_dtype)
        empty = tf.zeros((_dim(states, 0) * heads, max_length, self.config.d_model // heads), self.compute_dtype)
        layers = tuple((empty, empty, *layer.encoder_attn.cache_key_value(states)) for layer in self.layers)
        return KVCache(layers, tf.zeros((), tf.int32))

    def call(
        self,
        input_ids: tf.Tensor | None = None,
        attention_mask: tf.Tensor | None = None,
        position_ids: tf.Tensor | None = None,
        encoder_hidden_states: tf.Tensor | None = None,
        head_mask: tf.Tensor | None = None,
        cross_attn_head_mask: tf.Tensor | None = None,
        past_key_values: KVCache | None = None,
        inputs_embeds: tf.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        training: bool = False,
    ) -> BaseModelOutputWithPastAndCrossAttentions | tuple:
        """``input_ids [b, T]`` (only the new tokens when ``past_key_values`` is given) -> ``[b, T, d]``.

        Positions continue from the cache index unless ``position_ids [b, T]`` are given.
        ``attention_mask [b, past + T]`` (or ``[b, slots]``) marks real (1) and padding (0) tokens on top
        of causality. A given cache is written at its index and returned advanced; ``use_cache=True``
        without one starts a cache of ``max_target_positions`` slots.
        """
        output_attentions = config_flag(output_attentions, self.config, "output_attentions")
        output_hidden_states = config_flag(output_hidden_states, self.config, "output_hidden_states")
        return_dict = config_flag(return_dict, self.config, "return_dict")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of decoder_input_ids and decoder_inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # [b, T, d]
        _check_head_masks(len(self.layers), head_mask=head_mask, cross_attn_head_mask=cross_attn_head_mask)
        if past_key_values is None and use_cache:
            if encoder_hidden_states is None:
                raise ValueError("use_cache=True without past_key_values needs the encoder states")
            past_key_values = self.init_cache(encoder_hidden_states, self.config.max_target_positions)
        if past_key_values is not None and len(past_key_values.layers) != len(self.layers):
            raise ValueError(
                f"past_key_values has {len(past_key_values.layers)} layers, the decoder {len(self.layers)}"
            )
        q_len = _dim(inputs_embeds, 1)
        offset = past_key_values.index if past_key_values is not None else 0
        kv_len = _dim(past_key_values.layers[0][0], 1) if past_key_values is not None else q_len
        if position_ids is None:
            position_ids = (offset + tf.range(q_len))[None, :]  # [1, T]
        x = inputs_embeds + self.embed_positions(position_ids)
        x = self.dropout(x, training=training)
        if attention_mask is not None:  # right-pad to the key length: later slots are hidden causally anyway
            attention_mask = tf.cast(attention_mask, tf.int32)
            attention_mask = tf.pad(attention_mask, [[0, 0], [0, kv_len - _dim(attention_mask, 1)]], constant_values=1)
        mask = decoder_attention_mask(q_len, kv_len, offset, attention_mask)

        hidden_states, self_attentions, cross_attentions, cache = [], [], [], []
        for idx, layer in enumerate(self.layers):
            if output_hidden_states:
                hidden_states.append(x)
            layer_past = past_key_values.layers[idx] if past_key_values is not None else None
            y, self_weights, cross_weights, present = layer(
                x,
                attention_mask=mask,
                encoder_hidden_states=encoder_hidden_states,
                layer_head_mask=head_mask[idx] if head_mask is not None else None,
                cross_attn_layer_head_mask=cross_attn_head_mask[idx] if cross_attn_head_mask is not None else None,
                past_key_value=layer_past,
                cache_index=offset if layer_past is not None else None,
                training=training,
            )
            dropped = _layer_drop(self.config.decoder_layerdrop, training)
            if dropped is not None:  # LayerDrop: the state and the cache entry stay as they were
                y = tf.where(dropped, x, y)
                if layer_past is not None:
                    present = tuple(tf.where(dropped, old, new) for old, new in zip(layer_past, present, strict=True))
            x = y
            self_attentions.append(self_weights)
            cross_attentions.append(cross_weights)
            cache.append(present)
        x = self.layer_norm(x)
        hidden_states.append(x)

        with_cross = output_attentions and (encoder_hidden_states is not None or past_key_values is not None)
        out = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x,
            past_key_values=KVCache(tuple(cache), offset + q_len) if past_key_values is not None else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(self_attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if with_cross else None,
        )
        return out if return_dict else out.to_tuple()


def _check_head_masks(layers: int, **masks: tf.Tensor | None) -> None:
    """Each head mask needs one row per layer."""
    for name, mask in masks.items():
        if mask is not None and mask.shape[0] != layers:
            raise ValueError(f"{name} must have {layers} rows (one per layer), got {mask.shape[0]}")


def _dim(x: tf.Tensor, axis: int) -> Any:
    """A dimension as a Python int when static (so XLA sees constants), else as a scalar tensor."""
    static = x.shape[axis]
    return static if static is not None else tf.shape(x)[axis]


def _dims(x: tf.Tensor) -> list[Any]:
    """Every dimension as :func:`_dim` gives it. Known sizes as Python ints also keep the traced graph small: each
    size read from ``tf.shape`` is a slice op with three constants, and shapes built from them a pack op (a base
    decoder layer's attention traced to 209 operations, 114 of them constants)."""
    return [_dim(x, axis) for axis in range(x.shape.rank)]


class TFWhisperMainLayer(keras.layers.Layer):
    """Encoder + decoder under one layer named ``model``, as in transformers (``model/encoder/...``)."""

    def __init__(self, config: WhisperConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.encoder = TFWhisperEncoder(config, dtype=self.dtype_policy, name="encoder")
        self.decoder = TFWhisperDecoder(config, dtype=self.dtype_policy, name="decoder")

    def build(self, input_shape: Any = None) -> None:
        _build(self.encoder)
        _build(self.decoder)

    def _mask_input_features(
        self, input_features: tf.Tensor, training: bool, attention_mask: tf.Tensor | None = None
    ) -> tf.Tensor:
        """SpecAugment in training when ``config.apply_spec_augment``: zero random spans of frames
        (``mask_time_*``; ``attention_mask [b, frames]`` limits them to real frames) and of mel bins
        (``mask_feature_*``). Returns a new tensor."""
        config = self.config
        if not config.apply_spec_augment or not training:
            return input_features
        batch, bins, frames = tf.shape(input_features)[0], input_features.shape[1], input_features.shape[2]
        if config.mask_time_prob > 0:
            lengths = None if attention_mask is None else tf.reduce_sum(tf.cast(attention_mask, tf.int32), axis=-1)
            time_mask = _compute_mask_indices(
                batch, frames, config.mask_time_prob, config.mask_time_length, config.mask_time_min_masks, lengths
            )
            input_features = tf.where(time_mask[:, None, :], tf.zeros_like(input_features), input_features)
        if config.mask_feature_prob > 0:
            bin_mask = _compute_mask_indices(
                batch, bins, config.mask_feature_prob, config.mask_feature_length, config.mask_feature_min_masks
            )
            input_features = tf.where(bin_mask[:, :, None], tf.zeros_like(input_features), input_features)
        return input_features

    def call(
        self,
        input_features: tf.Tensor | None = None,
        decoder_input_ids: tf.Tensor | None = None,
        decoder_attention_mask: tf.Tensor | None = None,
        decoder_position_ids: tf.Tensor | None = None,
        head_mask: tf.Tensor | None = None,
        decoder_head_mask: tf.Tensor | None = None,
        cross_attn_head_mask: tf.Tensor | None = None,
        encoder_outputs: Any = None,
        past_key_values: KVCache | None = None,
        decoder_inputs_embeds: tf.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        attention_mask: tf.Tensor | None = None,
        training: bool = False,
    ) -> Seq2SeqModelOutput:
        """Run the encoder (unless ``encoder_outputs`` are given) and the decoder on its last state."""
        if encoder_outputs is None:
            if input_features is None:
                raise ValueError("pass input_features or encoder_outputs")
            encoder_outputs = self.encoder(
                self._mask_input_features(tf.convert_to_tensor(input_features), training, attention_mask),
                attention_mask=attention_mask,
                head_mask=head_mask,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                training=training,
            )
        encoder_outputs = as_encoder_output(encoder_outputs, tf.convert_to_tensor)
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            position_ids=decoder_position_ids,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            past_key_values=past_key_values,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            training=training,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            past_key_values=decoder_outputs.past_key_values,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class TFWhisperModel(TFWhisperPreTrainedModel):
    """Encoder + decoder (variables ``model/encoder/...``, ``model/decoder/...``), no LM head."""

    def __init__(self, config: WhisperConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.model = TFWhisperMainLayer(config, dtype=self.dtype_policy, name="model")
        self.build()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.model.decoder.embed_tokens

    def get_encoder(self) -> TFWhisperEncoder:
        return self.model.encoder

    def get_decoder(self) -> TFWhisperDecoder:
        return self.model.decoder

    def freeze_encoder(self) -> None:
        """Stop gradients into the encoder (fine-tune the decoder only)."""
        self.model.encoder.trainable = False

    def call(
        self,
        input_features: Any = None,
        decoder_input_ids: Any = None,
        decoder_attention_mask: Any = None,
        decoder_position_ids: Any = None,
        head_mask: Any = None,
        decoder_head_mask: Any = None,
        cross_attn_head_mask: Any = None,
        encoder_outputs: Any = None,
        past_key_values: KVCache | None = None,
        decoder_inputs_embeds: Any = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        attention_mask: Any = None,
        training: bool = False,
    ) -> Seq2SeqModelOutput | tuple:
        """The decoder's last hidden state ``[b, T, d]`` (and what was asked for)."""
        out = self.model(
            input_features,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            decoder_position_ids=decoder_position_ids,
            head_mask=head_mask,
            decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            encoder_outputs=encoder_outputs,
            past_key_values=past_key_values,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            attention_mask=attention_mask,
            training=training,
        )
        return out if config_flag(return_dict, self.config, "return_dict") else out.to_tuple()


def summed_cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(sum of the float32 cross-entropies, count) over the ``labels [...]`` that are not -100; fine-tuning
    sums over micro-batches and divides once by the whole batch's count."""
    labels = tf.cast(labels, tf.int32)
    valid = labels != -100
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(valid, labels, 0), logits=tf.cast(logits, tf.float32)
    )
    return tf.reduce_sum(tf.where(valid, losses, 0.0)), tf.reduce_sum(tf.cast(valid, tf.int32))


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy (float32) over the ``labels [...]`` that are not -100 (PyTorch's ignore_index)."""
    total, count = summed_cross_entropy(logits, labels)
    return total / tf.cast(count, tf.float32)


def classification_loss(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Cross-entropy of ``logits [b, num_labels]`` against class ids ``labels [b]``; with one label, the
    mean squared error against target values (regression), as in whisper_pt."""
    if logits.shape[-1] == 1:
        return tf.reduce_mean(tf.square(tf.cast(logits[:, 0], tf.float32) - tf.cast(labels, tf.float32)))
    return cross_entropy(logits, labels)


class TFWhisperForConditionalGeneration(TFWhisperGenerationMixin, TFWhisperTrainingMixin, TFWhisperPreTrainedModel):
    """``TFWhisperModel`` with the LM head (the transposed token embedding) and the LM loss."""

    def __init__(self, config: WhisperConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.model = TFWhisperMainLayer(config, dtype=self.dtype_policy, name="model")
        self.max_target_positions = config.max_target_positions
        # Replaced by the checkpoint's generation_config.json when loaded from one.
        self.generation_config = GenerationConfig.from_model_config(config)
        self.build()

    def get_encoder(self) -> TFWhisperEncoder:
        return self.model.encoder

    def get_decoder(self) -> TFWhisperDecoder:
        return self.model.decoder

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.model.decoder.embed_tokens

    def get_output_embeddings(self) -> keras.layers.Embedding:
        return self.model.decoder.embed_tokens

    def freeze_encoder(self) -> None:
        """Stop gradients into the encoder (fine-tune the decoder only)."""
        self.model.encoder.trainable = False

    def lm_logits(self, hidden_states: tf.Tensor) -> tf.Tensor:
        """``[b, T, d]`` -> ``[b, T, vocab]`` through the tied token embedding."""
        return tf.matmul(hidden_states, self.model.decoder.embed_tokens.embeddings, transpose_b=True)

    def call(
        self,
        input_features: Any = None,
        decoder_input_ids: Any = None,
        decoder_attention_mask: Any = None,
        decoder_position_ids: Any = None,
        head_mask: Any = None,
        decoder_head_mask: Any = None,
        cross_attn_head_mask: Any = None,
        encoder_outputs: Any = None,
        past_key_values: KVCache | None = None,
        decoder_inputs_embeds: Any = None,
        labels: Any = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        attention_mask: Any = None,
        training: bool = False,
    ) -> Seq2SeqLMOutput | tuple:
        """Logits ``[b, T, vocab]``; with ``labels [b, T]`` also the mean cross-entropy over labels != -100.

        Without decoder inputs, the labels shifted right (start token first) are the decoder inputs.
        """
        if labels is not None:
            labels = tf.cast(labels, tf.int32)
            check_labels_length(labels.shape[1], self.max_target_positions)
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = shift_tokens_right(
                    labels, self.config.pad_token_id, self.config.decoder_start_token_id
                )
        outputs = self.model(
            input_features,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            decoder_position_ids=decoder_position_ids,
            head_mask=head_mask,
            decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            encoder_outputs=encoder_outputs,
            past_key_values=past_key_values,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            attention_mask=attention_mask,
            training=training,
        )
        logits = self.lm_logits(outputs.last_hidden_state)
        out = Seq2SeqLMOutput(
            loss=cross_entropy(logits, labels) if labels is not None else None,
            logits=logits,
            past_key_values=outputs.past_key_values,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )
        return out if config_flag(return_dict, self.config, "return_dict") else out.to_tuple()


class TFWhisperForAudioClassification(TFWhisperPreTrainedModel):
    """Encoder, optional softmax-weighted sum of all its hidden states, projection, mean over time, classifier.

    transformers has no TF classification model; the variables follow its PyTorch names
    (``encoder/...``, ``projector``, ``classifier``, ``layer_weights``), as in the Flax backend.
    """

    has_classification_heads = True

    def __init__(self, config: WhisperConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        dtype = self.dtype_policy
        self.encoder = TFWhisperEncoder(config, dtype=dtype, name="encoder")
        num_layers = config.num_hidden_layers + 1  # the layers' outputs plus the embeddings
        if config.use_weighted_layer_sum:
            self.layer_weights = self.add_weight(
                name="layer_weights", shape=(num_layers,), initializer=keras.initializers.Constant(1.0 / num_layers)
            )
        self.projector = _dense(config.classifier_proj_size, config.init_std, dtype, "projector")
        self.classifier = _dense(config.num_labels, config.init_std, dtype, "classifier")
        self.build()

    def build(self, input_shape: Any = None) -> None:
        _build(self.encoder)
        _build_for_width(self.config.d_model, self.projector)
        _build_for_width(self.projector.units, self.classifier)

    @property
    def dummy_inputs(self) -> dict[str, tf.Tensor]:
        return {"input_features": super().dummy_inputs["input_features"]}

    def freeze_encoder(self) -> None:
        """Stop gradients into the encoder: only the projector and classifier (and layer weights) train."""
        self.encoder.trainable = False

    def get_encoder(self) -> TFWhisperEncoder:
        return self.encoder

    def call(
        self,
        input_features: Any = None,
        head_mask: Any = None,
        encoder_outputs: Any = None,
        labels: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        training: bool = False,
    ) -> SequenceClassifierOutput | tuple:
        """Logits ``[b, num_labels]``; with ``labels [b]`` the loss (see :func:`classification_loss`)."""
        if self.config.use_weighted_layer_sum:
            output_hidden_states = True
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                tf.convert_to_tensor(input_features),
                head_mask=head_mask,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                training=training,
            )
        encoder_outputs = as_encoder_output(encoder_outputs, tf.convert_to_tensor)
        if self.config.use_weighted_layer_sum:
            stacked = tf.stack(encoder_outputs.hidden_states, axis=1)  # [b, layers + 1, S, d]
            weights = tf.reshape(tf.nn.softmax(self.layer_weights, axis=-1), (-1, 1, 1))  # [layers + 1, 1, 1]
            hidden = tf.reduce_sum(stacked * tf.cast(weights, stacked.dtype), axis=1)  # [b, S, d]
        else:
            hidden = encoder_outputs.last_hidden_state
        pooled = tf.reduce_mean(self.projector(hidden), axis=1)  # [b, classifier_proj_size]
        logits = self.classifier(pooled)
        out = SequenceClassifierOutput(
            loss=classification_loss(logits, labels) if labels is not None else None,
            logits=logits,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )
        return out if config_flag(return_dict, self.config, "return_dict") else out.to_tuple()
