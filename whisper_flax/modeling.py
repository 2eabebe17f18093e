"""Flax (linen) Whisper with the transformers 4.57 Flax API and parameter paths.

Module names are transformers' (``model/encoder/layers/0/self_attn/q_proj/kernel``,
``model/decoder/embed_tokens/embedding``, ``.../layer_norm/scale``; the LM head is the transposed
token embedding and has no parameter), so an HF ``flax_model.msgpack`` tree drops into ``params``
and outputs match transformers to float32 rounding. Unlike transformers' mutable ``cache``
collection, the KV cache is an explicit fixed-size :class:`~whisper_flax.outputs.KVCache` with a
write index, passed in and returned, so the whole decoding loop compiles (``generation.py``).

Numerics: q is scaled by ``head_dim**-0.5`` before ``q @ k^T`` (as transformers and openai/whisper);
LayerNorm and softmax run in float32 whatever ``dtype`` (compute) and ``param_dtype`` (storage) are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from whisper_core import modeling_rules
from whisper_core.config import WhisperConfig
from whisper_core.generation_config import GenerationConfig
from whisper_core.modeling_rules import check_labels_length, config_flag
from whisper_core.outputs import as_encoder_output

from .checkpoint import CheckpointMixin
from .generation import FlaxWhisperGenerationMixin
from .outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    KVCache,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
)
from .programs import Program

Params = dict[str, Any]


def _gelu_new(x: jax.Array) -> jax.Array:
    return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * jnp.power(x, 3.0))))


def _gelu_fast(x: jax.Array) -> jax.Array:
    return 0.5 * x * (1.0 + jnp.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


# The formulas transformers' ACT2FN uses for each ``config.activation_function`` name.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": _gelu_new,
    "gelu_fast": _gelu_fast,
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> jax.Array:
    """The encoder's fixed position table ``[length, channels]`` (:func:`whisper_core.modeling_rules.sinusoids`)
    in jax.numpy float32."""
    return modeling_rules.sinusoids(length, channels, max_timescale, xp=jnp)


def shift_tokens_right(input_ids: jax.Array, pad_token_id: int, decoder_start_token_id: int) -> jax.Array:
    """Teacher-forcing decoder inputs from labels ``[batch, seq]``: prepend the start token, drop the last
    token, and turn the loss-ignore value -100 into ``pad_token_id`` (it is not a valid token id)."""
    if pad_token_id is None:
        raise ValueError("config.pad_token_id must be set to build decoder inputs from labels")
    start = jnp.full((input_ids.shape[0], 1), decoder_start_token_id, dtype=input_ids.dtype)
    shifted = jnp.concatenate([start, input_ids[:, :-1]], axis=1)
    return jnp.where(shifted == -100, pad_token_id, shifted)


def _compute_mask_indices(
    rng: jax.Array,
    shape: tuple[int, int],
    mask_prob: float,
    mask_length: int,
    min_masks: int = 0,
    lengths: jax.Array | None = None,
) -> jax.Array:
    """SpecAugment spans: a bool mask ``[batch, length]`` of ``mask_length``-long spans (they may overlap).

    whisper_pt's rule with JAX's RNG, traced so a train step compiles: a row of ``n`` real frames
    (``lengths [batch]``, right padding; default all) gets ``int(mask_prob * n / mask_length + u)``
    spans (one ``u ~ U[0, 1)`` per call), at least ``min_masks``, at most what fits in ``n``; starts are
    drawn without replacement among the real frames (the top scores of uniform noise, padding scored
    below any), so the span count is traced while the shapes stay static.
    """
    batch_size, length = shape
    if mask_length < 1:
        raise ValueError("mask_length must be at least 1")
    if mask_length > length:
        raise ValueError(f"mask_length ({mask_length}) must not exceed the masked axis length ({length})")
    epsilon_rng, start_rng = jax.random.split(rng)
    epsilon = jax.random.uniform(epsilon_rng)
    max_spans = length // mask_length
    lengths = jnp.full((batch_size,), length) if lengths is None else jnp.minimum(jnp.asarray(lengths), length)
    valid_starts = jnp.maximum(lengths - mask_length + 1, 0)  # [batch]
    num_spans = jnp.maximum((mask_prob * lengths / mask_length + epsilon).astype(jnp.int32), min_masks)
    num_spans = jnp.minimum(jnp.minimum(num_spans, max_spans), valid_starts)  # [batch]
    scores = jax.random.uniform(start_rng, (batch_size, length - mask_length + 1))
    scores = jnp.where(jnp.arange(length - mask_length + 1) < valid_starts[:, None], scores, -1.0)
    _, starts = jax.lax.top_k(scores, max_spans)  # [batch, max_spans], distinct, real frames first
    used = jnp.arange(max_spans)[None, :] < num_spans[:, None]  # [batch, max_spans]
    frames = jnp.arange(length)  # [length]
    offset = frames[None, None, :] - starts[:, :, None]  # [batch, max_spans, length]
    return jnp.any(used[:, :, None] & (offset >= 0) & (offset < mask_length), axis=1)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back, so fp16/bf16 models keep precise statistics.

    Subclassed (not wrapped) so the parameters stay at ``<name>/scale`` and ``<name>/bias``; the
    two-pass variance is torch's, closer than flax's default ``E[x²] - E[x]²``.
    """

    epsilon: float = 1e-5
    dtype: Any = jnp.float32
    use_fast_variance: bool = False

    def __call__(self, x: jax.Array) -> jax.Array:
        return super().__call__(x.astype(jnp.float32)).astype(x.dtype)


def decoder_attention_mask(q_len: int, kv_len: int, offset: Any, padding_mask: jax.Array | None) -> jax.Array:
    """Bool mask ``[batch or 1, 1, q_len, kv_len]``, True where a query may attend.

    Query ``i`` sits at absolute position ``offset + i`` (``offset`` is the cache index, possibly
    traced) and sees keys up to it (causal); that also hides cache slots not yet written. Keys whose
    ``padding_mask [batch, kv_len]`` is 0 are hidden too.
    """
    query_pos = offset + jnp.arange(q_len)[:, None]  # [q_len, 1]
    mask = (jnp.arange(kv_len)[None, :] <= query_pos)[None, None]  # [1, 1, q_len, kv_len]
    if padding_mask is not None:
        mask = mask & (padding_mask[:, None, None, :kv_len] > 0)
    return mask


# Queries from which unmasked attention goes one head at a time (see attend): the encoder's 1500 do.
HEADWISE_MIN_QUERIES = 256


def attend(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array | None,
    dropout: nn.Dropout,
    deterministic: bool,
    need_weights: bool = True,
) -> tuple[jax.Array, jax.Array | None]:
    """softmax(q k^T) v with ``q [..., T, hd]`` already scaled, ``k, v [..., S, hd]``, bool ``mask``
    broadcastable to ``[..., T, S]``; the leading dims are ``[b, h]``, or ``[b * h]`` over the cache.

    Masked scores become the dtype's minimum rather than -inf (as transformers' Flax bias does), so a
    query that sees nothing (a left-padding token) gets finite weights instead of NaN, which would
    otherwise leak into real rows through the next layer. Returns ``(out [..., T, hd], weights
    [..., T, S])``; weights are None when not needed and the heads went one at a time.

    The encoder's unmasked 1500 x 1500 attention goes one (batch row, head) at a time when the weights
    are not wanted: XLA on CPU otherwise streams the whole ``[b, h, T, S]`` score tensor through memory
    once per softmax pass, while one head's 9 MB of scores stay in the last-level cache, and each head's
    two products keep all 1500 queries, the shape at which they run at full matrix-product speed (base's
    attention at batch 1: 31 ms per layer, against 41 ms by blocks of 150 queries and 49 ms whole, on
    the 2-core CPU). The arithmetic and, on this CPU, the result are those of the whole computation.
    """
    q_len = q.shape[-2]
    unmasked = mask is None and (deterministic or dropout.rate == 0.0)
    if not need_weights and unmasked and q_len >= HEADWISE_MIN_QUERIES:
        return _attend_head_by_head(q, k, v), None
    scores = jnp.einsum("...qd,...kd->...qk", q, k)  # [..., T, S]
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(q.dtype)
    out = jnp.einsum("...qk,...kd->...qd", dropout(weights, deterministic=deterministic), v)
    return out, weights


def _flat_heads(x: jax.Array) -> jax.Array:
    return x.reshape(-1, *x.shape[-2:])


def _head_weights(q_head: jax.Array, k_head: jax.Array) -> jax.Array:
    """softmax(q k^T) in float32 for one head: ``[T, hd], [S, hd] -> [T, S]``."""
    return jax.nn.softmax((q_head @ k_head.T).astype(jnp.float32), axis=-1)


@jax.custom_vjp
def _attend_head_by_head(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Unmasked, dropout-free softmax(q k^T) v one (batch row, head) at a time: ``q, k, v [..., T, hd]``
    -> ``[..., T, hd]``. Only one ``[T, S]`` score matrix exists at a time, whatever the batch size.

    Its gradient (:func:`_head_by_head_backward`) recomputes each head's weights instead of keeping
    them all from the forward pass, as flash attention does: the ``[b * h, T, S]`` weights a plain
    gradient stores (432 MB for tiny.en at batch 8) no longer go through memory, and a tiny.en
    encoder layer's attention gradient at batch 8 takes 1.2 s instead of 1.6 s on the 2-core CPU."""

    def one_head(qkv: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        q_head, k_head, v_head = qkv  # [T, hd], [S, hd], [S, hd]
        return _head_weights(q_head, k_head).astype(v_head.dtype) @ v_head

    return jax.lax.map(one_head, (_flat_heads(q), _flat_heads(k), _flat_heads(v))).reshape(q.shape)


def _head_by_head_forward(q: jax.Array, k: jax.Array, v: jax.Array) -> tuple[jax.Array, tuple]:
    out = _attend_head_by_head(q, k, v)
    return out, (q, k, v, out)


def _head_by_head_backward(residuals: tuple, d_out: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per head, with W = softmax(q k^T) recomputed and O = W v: dv = W^T dO, and dS = W * (dO v^T -
    rowsum(dO * O)) gives dq = dS k and dk = dS^T q."""
    q, k, v, out = residuals

    def one_head(heads: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array, jax.Array]:
        q_head, k_head, v_head, out_head, d_head = heads
        weights = _head_weights(q_head, k_head)
        d_v = weights.T.astype(v_head.dtype) @ d_head
        d_weights = (d_head @ v_head.T).astype(jnp.float32)
        row_dot = jnp.sum((d_head * out_head).astype(jnp.float32), axis=-1, keepdims=True)
        d_scores = (weights * (d_weights - row_dot)).astype(q_head.dtype)
        return d_scores @ k_head, d_scores.T @ q_head, d_v

    d_q, d_k, d_v = jax.lax.map(one_head, tuple(_flat_heads(x) for x in (q, k, v, out, d_out)))
    return d_q.reshape(q.shape), d_k.reshape(k.shape), d_v.reshape(v.shape)


_attend_head_by_head.defvjp(_head_by_head_forward, _head_by_head_backward)


class FlaxWhisperAttention(nn.Module):
    """Multi-head attention; self-attention when ``key_value_states`` is None, else cross-attention."""

    embed_dim: int
    num_heads: int
    dropout: float = 0.0
    init_std: float = 0.02
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        self.head_dim = self.embed_dim // self.num_heads
        self.scaling = self.head_dim**-0.5

        def dense(use_bias: bool = True) -> nn.Dense:
            init = jax.nn.initializers.normal(self.init_std)
            return nn.Dense(
                self.embed_dim, use_bias=use_bias, dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=init
            )

        self.k_proj = dense(use_bias=False)  # Whisper's key projection has no bias
        self.v_proj = dense()
        self.q_proj = dense()
        self.out_proj = dense()
        self.dropout_layer = nn.Dropout(self.dropout)

    def _split_heads(self, x: jax.Array) -> jax.Array:
        batch, seq, _ = x.shape
        return x.reshape(batch, seq, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)  # [b, s, d] -> [b, h, s, hd]

    def project_key_value(self, states: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``states [b, S, d]`` -> ``(k, v)`` each ``[b, h, S, hd]``."""
        return self._split_heads(self.k_proj(states)), self._split_heads(self.v_proj(states))

    def _project_query_key_value(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``x [b, T, d]`` -> scaled ``q``, ``k``, ``v`` each ``[b, h, T, hd]``, as the three projections
        give them but in one product with the kernels side by side. In a decoding step each projection
        reads a whole kernel for one token, and one product over the three (whose concatenation XLA
        computes once, outside the generate loop) takes 92 us against 150 us for three on tiny.en."""
        kernels = [m.variables["params"]["kernel"] for m in (self.q_proj, self.k_proj, self.v_proj)]
        q_bias, v_bias = self.q_proj.variables["params"]["bias"], self.v_proj.variables["params"]["bias"]
        bias = jnp.concatenate([q_bias, jnp.zeros_like(q_bias), v_bias])
        qkv = x.astype(self.dtype) @ jnp.concatenate(kernels, axis=1).astype(self.dtype) + bias.astype(self.dtype)
        q, k, v = jnp.split(qkv, 3, axis=-1)
        return self._split_heads(q * self.scaling), self._split_heads(k), self._split_heads(v)

    def cache_key_value(self, states: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``states [b, S, d]`` -> ``(k, v)`` each ``[b * h, S, hd]``, the :class:`KVCache` layout
        (cross-attention caches these once)."""
        return tuple(_head_rows(x) for x in self.project_key_value(states))

    def __call__(
        self,
        hidden_states: jax.Array,
        key_value_states: jax.Array | None = None,
        past_key_value: tuple[jax.Array, jax.Array] | None = None,
        cache_index: Any = None,
        attention_mask: jax.Array | None = None,
        deterministic: bool = True,
        need_weights: bool = True,
    ) -> tuple[jax.Array, jax.Array | None, tuple[jax.Array, jax.Array]]:
        """``hidden_states [b, T, d]`` -> ``(out [b, T, d], weights [b, h, T, S], (k, v))``.

        Self-attention writes this step's k/v into the fixed-size ``past_key_value`` at ``cache_index``.
        Cross-attention is a call with ``key_value_states [b, S, d]`` or with a ``past_key_value`` but no
        ``cache_index``: it reuses the cached k/v when given (the encoder output does not change while
        decoding), else projects ``key_value_states``. The returned (k, v) is the cache for next time:
        ``[b * h, S, hd]`` when a cache was given (see :class:`KVCache`), else ``[b, h, S, hd]``.
        """
        batch, q_len, _ = hidden_states.shape
        if past_key_value is not None and cache_index is not None:  # self-attention, decoding with the cache
            q, k, v = self._project_query_key_value(hidden_states)
            start = (0, cache_index, 0)
            k = jax.lax.dynamic_update_slice(past_key_value[0], _head_rows(k).astype(past_key_value[0].dtype), start)
            v = jax.lax.dynamic_update_slice(past_key_value[1], _head_rows(v).astype(past_key_value[1].dtype), start)
        else:
            q = self._split_heads(self.q_proj(hidden_states) * self.scaling)
            if past_key_value is not None:  # cross-attention over the cached encoder k/v
                k, v = past_key_value
            else:
                k, v = self.project_key_value(hidden_states if key_value_states is None else key_value_states)
        if past_key_value is None:
            out, weights = attend(q, k, v, attention_mask, self.dropout_layer, deterministic, need_weights)
        elif k.shape[0] // self.num_heads != batch:  # copies of each cached input share its k/v
            out, weights = self._attend_copies(q, k, v, attention_mask, deterministic, need_weights)
        else:  # over the cache, one row per (batch row, head)
            if attention_mask is not None:
                attention_mask = _head_rows(
                    jnp.broadcast_to(attention_mask, (batch, self.num_heads, q_len, k.shape[1]))
                )
            out, weights = attend(_head_rows(q), k, v, attention_mask, self.dropout_layer, deterministic, need_weights)
            out = out.reshape(batch, self.num_heads, q_len, self.head_dim)
            weights = None if weights is None else weights.reshape(batch, self.num_heads, q_len, k.shape[1])
        out = out.transpose(0, 2, 1, 3).reshape(batch, q_len, self.embed_dim)  # [b, h, T, hd] -> [b, T, d]
        return self.out_proj(out), weights, (k, v)

    def _attend_copies(
        self,
        q: jax.Array,
        k: jax.Array,
        v: jax.Array,
        attention_mask: jax.Array | None,
        deterministic: bool,
        need_weights: bool,
    ) -> tuple[jax.Array, jax.Array | None]:
        """Cross-attention of ``q [b, h, T, hd]`` over a cache of ``inputs < b`` rows ``[inputs * h, S, hd]``,
        the batch rows coming in blocks of ``b / inputs`` copies of each input (``best_of`` draws, beams):
        each input's copies attend as one block of queries, so its keys/values are read once a step, not
        once per copy. Returns ``(out, weights)`` as ``[b, h, T, ...]``."""
        if attention_mask is not None:
            raise ValueError("cross-attention shared by copies takes no attention mask")
        batch, heads, steps, head_dim = q.shape
        inputs = k.shape[0] // heads
        copies = batch // inputs
        grouped = q.reshape(inputs, copies, heads, steps, head_dim).transpose(0, 2, 1, 3, 4)
        grouped = grouped.reshape(inputs * heads, copies * steps, head_dim)
        out, weights = attend(grouped, k, v, None, self.dropout_layer, deterministic, need_weights)

        def ungroup(x: jax.Array) -> jax.Array:  # [inputs * h, copies * T, n] -> [b, h, T, n]
            x = x.reshape(inputs, heads, copies, steps, -1).transpose(0, 2, 1, 3, 4)
            return x.reshape(batch, heads, steps, -1)

        return ungroup(out), None if weights is None else ungroup(weights)


def _head_rows(x: jax.Array) -> jax.Array:
    """``[b, h, ...]`` -> ``[b * h, ...]``, the :class:`KVCache` layout."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


class FlaxWhisperEncoderLayer(nn.Module):
    """Pre-norm block: x + SelfAttn(LN(x)), then x + MLP(LN(x))."""

    config: WhisperConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        config, d = self.config, self.config.d_model
        self.self_attn = FlaxWhisperAttention(
            d, config.encoder_attention_heads, config.attention_dropout, config.init_std, self.dtype, self.param_dtype
        )
        self.self_attn_layer_norm = LayerNorm(param_dtype=self.param_dtype)
        self.dropout_layer = nn.Dropout(config.dropout)
        self.activation_fn = ACTIVATIONS[config.activation_function]
        self.activation_dropout_layer = nn.Dropout(config.activation_dropout)
        self.fc1 = _dense(config.encoder_ffn_dim, config, self.dtype, self.param_dtype)
        self.fc2 = _dense(d, config, self.dtype, self.param_dtype)
        self.final_layer_norm = LayerNorm(param_dtype=self.param_dtype)

    def __call__(
        self, x: jax.Array, deterministic: bool = True, output_attentions: bool = True
    ) -> tuple[jax.Array, jax.Array | None]:
        h, weights, _ = self.self_attn(
            self.self_attn_layer_norm(x), deterministic=deterministic, need_weights=output_attentions
        )
        x = x + self.dropout_layer(h, deterministic=deterministic)
        x = x + self._mlp(self.final_layer_norm(x), deterministic)
        if x.dtype == jnp.float16:  # as transformers' PyTorch model: keep fp16 activations finite
            limit = float(jnp.finfo(x.dtype).max) - 1000
            x = jnp.clip(x, -limit, limit)
        return x, weights

    def _mlp(self, x: jax.Array, deterministic: bool) -> jax.Array:
        x = self.activation_dropout_layer(self.activation_fn(self.fc1(x)), deterministic=deterministic)
        return self.dropout_layer(self.fc2(x), deterministic=deterministic)


class FlaxWhisperDecoderLayer(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to the encoder, MLP."""

    config: WhisperConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        config, d = self.config, self.config.d_model
        heads, dtypes = config.decoder_attention_heads, (self.dtype, self.param_dtype)
        self.self_attn = FlaxWhisperAttention(d, heads, config.attention_dropout, config.init_std, *dtypes)
        self.dropout_layer = nn.Dropout(config.dropout)
        self.activation_fn = ACTIVATIONS[config.activation_function]
        self.activation_dropout_layer = nn.Dropout(config.activation_dropout)
        self.self_attn_layer_norm = LayerNorm(param_dtype=self.param_dtype)
        self.encoder_attn = FlaxWhisperAttention(d, heads, config.attention_dropout, config.init_std, *dtypes)
        self.encoder_attn_layer_norm = LayerNorm(param_dtype=self.param_dtype)
        self.fc1 = _dense(config.decoder_ffn_dim, config, *dtypes)
        self.fc2 = _dense(d, config, *dtypes)
        self.final_layer_norm = LayerNorm(param_dtype=self.param_dtype)

    def __call__(
        self,
        x: jax.Array,
        attention_mask: jax.Array | None = None,
        encoder_hidden_states: jax.Array | None = None,
        past_key_value: tuple[jax.Array, ...] | None = None,
        cache_index: Any = None,
        deterministic: bool = True,
    ) -> tuple[jax.Array, jax.Array, jax.Array | None, tuple[jax.Array, ...]]:
        """``x [b, T, d]`` -> ``(x, self weights, cross weights, (self_k, self_v, cross_k, cross_v))``."""
        self_past = past_key_value[:2] if past_key_value is not None else None
        cross_past = past_key_value[2:] if past_key_value is not None else None
        h, self_weights, self_kv = self.self_attn(
            self.self_attn_layer_norm(x),
            past_key_value=self_past,
            cache_index=cache_index,
            attention_mask=attention_mask,
            deterministic=deterministic,
        )
        x = x + self.dropout_layer(h, deterministic=deterministic)
        cross_weights, cross_kv = None, (None, None)
        if encoder_hidden_states is not None or cross_past is not None:
            h, cross_weights, cross_kv = self.encoder_attn(
                self.encoder_attn_layer_norm(x),
                key_value_states=encoder_hidden_states,
                past_key_value=cross_past,
                deterministic=deterministic,
            )
            x = x + self.dropout_layer(h, deterministic=deterministic)
        h = self.final_layer_norm(x)
        h = self.activation_dropout_layer(self.activation_fn(self.fc1(h)), deterministic=deterministic)
        x = x + self.dropout_layer(self.fc2(h), deterministic=deterministic)
        return x, self_weights, cross_weights, (*self_kv, *cross_kv)


def _dense(features: int, config: WhisperConfig, dtype: Any, param_dtype: Any, use_bias: bool = True) -> nn.Dense:
    init = jax.nn.initializers.normal(config.init_std)
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, kernel_init=init)


class FlaxWhisperLayerCollection(nn.Module):
    """The layers as children ``0, 1, ...`` of a module named ``layers``: transformers' Flax param paths
    (``encoder/layers/0/...``). The owner loops over ``.layers`` itself."""

    config: WhisperConfig
    layer_class: type[nn.Module]
    num_layers: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        self.layers = [
            self.layer_class(self.config, self.dtype, self.param_dtype, name=str(i)) for i in range(self.num_layers)
        ]


class FlaxWhisperPreTrainedModel(CheckpointMixin):
    """What every Whisper model shares: ``config``, the linen ``module``, the ``params`` pytree, and
    transformers' Flax entry points (``init_weights``, ``init_cache``, ``encode``, ``decode``).

    ``dtype`` is the compute dtype, ``param_dtype`` the storage dtype of new parameters. Checkpoint I/O
    (``from_pretrained``/``save_pretrained`` through ``weights_bridge``) comes from ``CheckpointMixin``.
    """

    config_class = WhisperConfig
    base_model_prefix = "model"
    main_input_name = "input_features"
    module_class: type[nn.Module]

    def __init__(
        self,
        config: WhisperConfig,
        input_shape: tuple[int, ...] | None = None,
        seed: int = 0,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        _do_init: bool = True,
    ) -> None:
        self.config = config
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.module = self.module_class(config, dtype=dtype, param_dtype=param_dtype)
        self.input_shape = input_shape or (1, config.num_mel_bins, 2 * config.max_source_positions)
        self.params: Params | None = self.init_weights(jax.random.PRNGKey(seed), self.input_shape) if _do_init else None
        self._jitted: dict[Any, Callable] = {}

    def init_weights(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Params:
        """transformers' init: normal(0, init_std) for dense/conv/embedding kernels, zero biases, unit
        LayerNorms, sinusoids for the encoder positions."""
        params_rng, dropout_rng = jax.random.split(rng)
        return self.module.init({"params": params_rng, "dropout": dropout_rng}, **self._dummy_inputs(input_shape))[
            "params"
        ]

    def _dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, jax.Array]:
        decoder_input_ids = jnp.zeros((input_shape[0], 1), dtype=jnp.int32)
        return {"input_features": jnp.zeros(input_shape, jnp.float32), "decoder_input_ids": decoder_input_ids}

    def _params(self, params: Params | None) -> dict[str, Params]:
        params = params if params is not None else self.params
        if params is None:
            raise ValueError("the model has no params: pass params= or load them (from_pretrained)")
        return {"params": params}

    def _compiled(self, key: Any, make: Callable[[], Callable]) -> Callable:
        """One jitted function per ``key`` for this model (jit then caches one executable per input shape),
        kept on disk as exported programs where :func:`~whisper_flax.programs.keep_programs` asks. ``key``
        and the module (config and dtypes) are all a program depends on besides the code and the
        arguments: every ``make`` builds its function from them alone."""
        if key not in self._jitted:
            self._jitted[key] = Program(make(), lambda: self._describe(key))
        return self._jitted[key]

    def _describe(self, key: Any) -> str:
        """What a traced program of this model depends on besides the code and its arguments: the module
        (dtypes), the whole config as it is now, and the program's key."""
        return f"{self.module!r}\n{json.dumps(self.config.to_dict(), sort_keys=True, default=str)}\n{key!r}"

    def _get_feat_extract_output_lengths(self, input_lengths: jax.Array) -> jax.Array:
        """Encoder output frames for ``input_lengths`` mel frames (conv2 has stride 2)."""
        return (input_lengths - 1) // 2 + 1

    def init_cache(
        self, batch_size: int, max_length: int, encoder_outputs: Any, params: Params | None = None
    ) -> KVCache:
        """An empty cache of ``max_length`` self-attention slots, with the cross-attention keys/values of
        ``encoder_outputs`` (``[batch_size, frames, d]`` first) projected once."""
        encoder_states = as_encoder_output(encoder_outputs).last_hidden_state
        if encoder_states.shape[0] != batch_size:
            raise ValueError(f"encoder_outputs have batch {encoder_states.shape[0]}, the cache {batch_size}")
        if max_length > self.config.max_target_positions:
            raise ValueError(f"max_length {max_length} exceeds max_target_positions {self.config.max_target_positions}")
        return self.module.apply(self._params(params), encoder_states, max_length, method="init_cache")

    def encode(
        self,
        input_features: Any,
        attention_mask: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        train: bool = False,
        params: Params | None = None,
        dropout_rng: jax.Array | None = None,
    ) -> BaseModelOutput | tuple:
        """``input_features [b, num_mel_bins, 2 * max_source_positions]`` -> encoder states ``[b, S, d]``.

        ``attention_mask`` is accepted for API compatibility and unused (Whisper always sees 30 s).
        """
        out = self.module.apply(
            self._params(params),
            jnp.asarray(input_features, jnp.float32),
            output_attentions=config_flag(output_attentions, self.config, "output_attentions"),
            output_hidden_states=config_flag(output_hidden_states, self.config, "output_hidden_states"),
            deterministic=not train,
            rngs=_rngs(dropout_rng),
            method="encode",
        )
        return out if config_flag(return_dict, self.config, "return_dict") else out.to_tuple()

    def decode(
        self,
        decoder_input_ids: Any,
        encoder_outputs: Any,
        encoder_attention_mask: Any = None,
        decoder_attention_mask: Any = None,
        decoder_position_ids: Any = None,
        past_key_values: KVCache | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        train: bool = False,
        params: Params | None = None,
        dropout_rng: jax.Array | None = None,
    ) -> Any:
        """Decoder over ``decoder_input_ids [b, T]`` (only the new tokens when ``past_key_values`` is given).

        With a cache (from :meth:`init_cache`), cross-attention uses its keys/values, this step's keys and
        values are written at its index, positions continue from it, and ``decoder_attention_mask`` (if
        any) spans all ``max_length`` cache slots; the returned ``past_key_values`` is the advanced cache.
        Without one, positions follow transformers' Flax rule (``cumsum(mask) - 1``, else ``0..T-1``).
        ``encoder_attention_mask`` is accepted for API compatibility and unused.
        """
        ids = jnp.asarray(decoder_input_ids, jnp.int32)
        if past_key_values is None:
            decoder_position_ids = _default_positions(ids, decoder_attention_mask, decoder_position_ids)
        out = self.module.apply(
            self._params(params),
            ids,
            as_encoder_output(encoder_outputs).last_hidden_state,
            attention_mask=None if decoder_attention_mask is None else jnp.asarray(decoder_attention_mask),
            position_ids=None if decoder_position_ids is None else jnp.asarray(decoder_position_ids, jnp.int32),
            past_key_values=past_key_values,
            output_attentions=config_flag(output_attentions, self.config, "output_attentions"),
            output_hidden_states=config_flag(output_hidden_states, self.config, "output_hidden_states"),
            deterministic=not train,
            rngs=_rngs(dropout_rng),
            method="decode",
        )
        return out if config_flag(return_dict, self.config, "return_dict") else out.to_tuple()


def _frame_mask(attention_mask: Any) -> jax.Array | None:
    """The processor's frame ``attention_mask [b, frames]`` as int32 (None stays None)."""
    return None if attention_mask is None else jnp.asarray(attention_mask, jnp.int32)


def _rngs(dropout_rng: jax.Array | None) -> dict[str, jax.Array]:
    return {"dropout": dropout_rng} if dropout_rng is not None else {}


def _default_positions(ids: jax.Array, attention_mask: Any, position_ids: Any) -> Any:
    """transformers' Flax default decoder positions: ``cumsum(mask) * mask - 1``, else ``0..T-1``."""
    if position_ids is not None:
        return position_ids
    if attention_mask is not None:
        mask = jnp.asarray(attention_mask, jnp.int32)
        return mask.cumsum(-1) * mask - 1
    return jnp.broadcast_to(jnp.arange(ids.shape[1])[None, :], ids.shape)


def _layer_drop(module: nn.Module, layerdrop: float, deterministic: bool) -> jax.Array | None:
    """LayerDrop in training: a traced coin per layer (``None`` when off), so the layer is skipped by
    ``where`` rather than by Python control flow and the step stays compilable."""
    if deterministic or layerdrop <= 0.0:
        return None
    return jax.random.uniform(module.make_rng("dropout")) < layerdrop


class FlaxWhisperEncoder(nn.Module):
    """Two GELU convolutions (the second halves time), fixed sinusoidal positions, pre-norm layers."""

    config: WhisperConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        config, d = self.config, self.config.d_model
        init = jax.nn.initializers.normal(config.init_std)
        conv = {"dtype": self.dtype, "param_dtype": self.param_dtype, "kernel_init": init}
        self.conv1 = nn.Conv(d, kernel_size=(3,), padding=((1, 1),), **conv)
        self.conv2 = nn.Conv(d, kernel_size=(3,), strides=(2,), padding=((1, 1),), **conv)
        self.embed_positions = nn.Embed(
            config.max_source_positions,
            d,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            embedding_init=lambda key, shape, dtype: sinusoids(*shape).astype(dtype),
        )
        self.dropout_layer = nn.Dropout(config.dropout)
        self.layers = FlaxWhisperLayerCollection(
            config, FlaxWhisperEncoderLayer, config.encoder_layers, self.dtype, self.param_dtype
        )
        self.layer_norm = LayerNorm(param_dtype=self.param_dtype)

    def __call__(
        self,
        input_features: jax.Array,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
    ) -> BaseModelOutput:
        """``input_features [b, num_mel_bins, 2 * max_source_positions]`` -> states ``[b, max_source_positions, d]``.

        The frame count must be exact: Whisper always sees 30 s of (padded) audio.
        """
        expected_frames = 2 * self.config.max_source_positions
        if input_features.ndim != 3 or input_features.shape[1] != self.config.num_mel_bins:
            raise ValueError(
                f"Whisper expects input_features of shape (batch, {self.config.num_mel_bins}, {expected_frames}), "
                f"got {tuple(input_features.shape)}"
            )
        if input_features.shape[-1] != expected_frames:
            raise ValueError(
                f"Whisper expects the mel input features to be of length {expected_frames}, but found "
                f"{input_features.shape[-1]}. Make sure to pad the input mel features to {expected_frames}."
            )
        x = input_features.astype(self.dtype).transpose(0, 2, 1)  # [b, frames, mels]
        x = jax.nn.gelu(self.conv1(x), approximate=False)  # [b, frames, d]
        x = jax.nn.gelu(self.conv2(x), approximate=False)  # [b, frames / 2, d]
        positions = jax.lax.stop_gradient(self.embed_positions(jnp.arange(self.config.max_source_positions)))
        x = self.dropout_layer(x + positions, deterministic=deterministic)  # sinusoids, not trained

        hidden_states, attentions = [], []
        for layer in self.layers.layers:
            if output_hidden_states:
                hidden_states.append(x)
            y, weights = layer(x, deterministic, output_attentions)
            dropped = _layer_drop(self, self.config.encoder_layerdrop, deterministic)
            x = y if dropped is None else jnp.where(dropped, x, y)
            attentions.append(weights)
        x = self.layer_norm(x)
        hidden_states.append(x)
        return BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )


class FlaxWhisperDecoder(nn.Module):
    """Token + learned position embeddings, pre-norm layers with causal self- and cross-attention."""

    config: WhisperConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        config, d = self.config, self.config.d_model
        init = jax.nn.initializers.normal(config.init_std)
        embed = {"dtype": self.dtype, "param_dtype": self.param_dtype, "embedding_init": init}
        self.embed_tokens = nn.Embed(config.vocab_size, d, **embed)
        self.embed_positions = nn.Embed(config.max_target_positions, d, **embed)
        self.dropout_layer = nn.Dropout(config.dropout)
        self.layers = FlaxWhisperLayerCollection(
            config, FlaxWhisperDecoderLayer, config.decoder_layers, self.dtype, self.param_dtype
        )
        self.layer_norm = LayerNorm(param_dtype=self.param_dtype)

    def init_cache(self, encoder_hidden_states: jax.Array, max_length: int) -> KVCache:
        """Empty self-attention slots ``[b * h, max_length, hd]`` plus each layer's cross-attention k/v."""
        batch, heads = encoder_hidden_states.shape[0], self.config.decoder_attention_heads
        empty = jnp.zeros((batch * heads, max_length, self.config.d_model // heads), self.dtype)
        layers = tuple(
            (empty, empty, *layer.encoder_attn.cache_key_value(encoder_hidden_states.astype(self.dtype)))
            for layer in self.layers.layers
        )
        return KVCache(layers, jnp.zeros((), jnp.int32))

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        position_ids: jax.Array | None = None,
        encoder_hidden_states: jax.Array | None = None,
        past_key_values: KVCache | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        """``input_ids [b, T]`` (only the new tokens when ``past_key_values`` is given) -> ``[b, T, d]``.

        Positions continue from the cache index unless ``position_ids [b, T]`` are given.
        ``attention_mask [b, kv]`` (``kv`` = T, or the cache length) marks real (1) and padding (0)
        tokens on top of causality.
        """
        if past_key_values is not None and len(past_key_values.layers) != self.config.decoder_layers:
            raise ValueError(
                f"past_key_values has {len(past_key_values.layers)} layers, the decoder {self.config.decoder_layers}"
            )
        q_len = input_ids.shape[1]
        offset = past_key_values.index if past_key_values is not None else 0
        kv_len = past_key_values.layers[0][0].shape[1] if past_key_values is not None else q_len
        if position_ids is None:
            position_ids = (offset + jnp.arange(q_len))[None, :]  # [1, T]
        x = self.embed_tokens(input_ids) + self.embed_positions(position_ids)  # [b, T, d]
        x = self.dropout_layer(x, deterministic=deterministic)
        mask = decoder_attention_mask(q_len, kv_len, offset, attention_mask)

        hidden_states, self_attentions, cross_attentions, cache = [], [], [], []
        for idx, layer in enumerate(self.layers.layers):
            if output_hidden_states:
                hidden_states.append(x)
            layer_past = past_key_values.layers[idx] if past_key_values is not None else None
            y, self_weights, cross_weights, present = layer(
                x, mask, encoder_hidden_states, layer_past, offset, deterministic
            )
            dropped = _layer_drop(self, self.config.decoder_layerdrop, deterministic)
            if dropped is not None:  # LayerDrop: the state and the cache entry stay as they were
                y = jnp.where(dropped, x, y)
                if layer_past is not None:
                    present = tuple(jnp.where(dropped, old, new) for old, new in zip(layer_past, present, strict=True))
            x = y
            self_attentions.append(self_weights)
            cross_attentions.append(cross_weights)
            cache.append(present)
        x = self.layer_norm(x)
        hidden_states.append(x)

        with_cross = output_attentions and (encoder_hidden_states is not None or past_key_values is not None)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x,
            past_key_values=KVCache(tuple(cache), offset + q_len) if past_key_values is not None else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(self_attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if with_cross else None,
        )


class FlaxWhisperModule(nn.Module):
    """Encoder + decoder, returning the decoder's last hidden state (no LM head)."""

    config: WhisperConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        self.encoder = FlaxWhisperEncoder(self.config, self.dtype, self.param_dtype)
        self.decoder = FlaxWhisperDecoder(self.config, self.dtype, self.param_dtype)

    def encode(self, input_features: jax.Array, **kwargs: Any) -> BaseModelOutput:
        return self.encoder(input_features, **kwargs)

    def decode(
        self, decoder_input_ids: jax.Array, encoder_hidden_states: jax.Array | None, **kwargs: Any
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        return self.decoder(decoder_input_ids, encoder_hidden_states=encoder_hidden_states, **kwargs)

    def init_cache(self, encoder_hidden_states: jax.Array, max_length: int) -> KVCache:
        return self.decoder.init_cache(encoder_hidden_states, max_length)

    def _mask_input_features(self, input_features: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        """SpecAugment (called in training when ``config.apply_spec_augment``): zero random spans of frames
        (``mask_time_*``; ``attention_mask [b, frames]`` limits them to real frames) and of mel bins
        (``mask_feature_*``) of ``input_features [b, bins, frames]``, drawn from the ``dropout`` RNG stream."""
        config = self.config
        batch, bins, frames = input_features.shape
        if config.mask_time_prob > 0:
            time_mask = _compute_mask_indices(
                self.make_rng("dropout"),
                (batch, frames),
                config.mask_time_prob,
                config.mask_time_length,
                config.mask_time_min_masks,
                None if attention_mask is None else attention_mask.sum(axis=-1),
            )
            input_features = jnp.where(time_mask[:, None, :], 0.0, input_features)  # [b, 1, frames]
        if config.mask_feature_prob > 0:
            bin_mask = _compute_mask_indices(
                self.make_rng("dropout"),
                (batch, bins),
                config.mask_feature_prob,
                config.mask_feature_length,
                config.mask_feature_min_masks,
            )
            input_features = jnp.where(bin_mask[:, :, None], 0.0, input_features)  # [b, bins, 1]
        return input_features

    def __call__(
        self,
        input_features: jax.Array,
        decoder_input_ids: jax.Array,
        decoder_attention_mask: jax.Array | None = None,
        decoder_position_ids: jax.Array | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
        attention_mask: jax.Array | None = None,
    ) -> Seq2SeqModelOutput:
        """Run the encoder (on SpecAugmented features when training with ``apply_spec_augment``; the
        frame ``attention_mask`` keeps the time spans on real frames) and the decoder on its last state."""
        if self.config.apply_spec_augment and not deterministic:
            input_features = self._mask_input_features(input_features, attention_mask)
        encoder_outputs = self.encoder(input_features, output_attentions, output_hidden_states, deterministic)
        decoder_outputs = self.decoder(
            decoder_input_ids,
            attention_mask=decoder_attention_mask,
            position_ids=decoder_position_ids,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=deterministic,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class FlaxWhisperModel(FlaxWhisperPreTrainedModel):
    """Encoder + decoder (params ``encoder/...``, ``decoder/...``), returning the decoder's last state."""

    module_class = FlaxWhisperModule

    def __call__(
        self,
        input_features: Any,
        decoder_input_ids: Any,
        attention_mask: Any = None,
        decoder_attention_mask: Any = None,
        position_ids: Any = None,
        decoder_position_ids: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        train: bool = False,
        params: Params | None = None,
        dropout_rng: jax.Array | None = None,
    ) -> Seq2SeqModelOutput | tuple:
        """transformers' Flax signature. ``attention_mask [b, frames]`` (the processor's, 1 on real audio)
        only keeps SpecAugment's time spans on real frames in training; ``position_ids`` are unused."""
        ids = jnp.asarray(decoder_input_ids, jnp.int32)
        out = self.module.apply(
            self._params(params),
            jnp.asarray(input_features, jnp.float32),
            ids,
            None if decoder_attention_mask is None else jnp.asarray(decoder_attention_mask),
            _default_positions(ids, decoder_attention_mask, decoder_position_ids),
            config_flag(output_attentions, self.config, "output_attentions"),
            config_flag(output_hidden_states, self.config, "output_hidden_states"),
            deterministic=not train,
            attention_mask=_frame_mask(attention_mask),
            rngs=_rngs(dropout_rng),
        )
        return out if config_flag(return_dict, self.config, "return_dict") else out.to_tuple()


def summed_cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sum of the float32 cross-entropies, count) over the ``labels [...]`` that are not -100; training
    sums over micro-batches and divides once by the whole batch's count."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    valid = labels != -100
    picked = jnp.take_along_axis(log_probs, jnp.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    return -jnp.sum(jnp.where(valid, picked, 0.0)), jnp.sum(valid)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy (float32) over the ``labels [...]`` that are not -100 (PyTorch's ignore_index)."""
    total, count = summed_cross_entropy(logits, labels)
    return total / count


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of ``logits [b, num_labels]`` against class ids ``labels [b]``; with one label, the
    mean squared error against target values (regression), as in whisper_pt."""
    if logits.shape[-1] == 1:
        return jnp.mean((logits[:, 0].astype(jnp.float32) - labels.astype(jnp.float32)) ** 2)
    return cross_entropy(logits, labels)


class FlaxWhisperForConditionalGenerationModule(nn.Module):
    """``FlaxWhisperModule`` with the LM head: the transposed token embedding (``lm_head`` only when untied)."""

    config: WhisperConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        self.model = FlaxWhisperModule(self.config, self.dtype, self.param_dtype)
        if not self.config.tie_word_embeddings:
            self.lm_head = _dense(self.config.vocab_size, self.config, self.dtype, self.param_dtype, use_bias=False)

    def logits(self, hidden_states: jax.Array) -> jax.Array:
        """``[b, T, d]`` -> ``[b, T, vocab]``."""
        if not self.config.tie_word_embeddings:
            return self.lm_head(hidden_states)
        embedding = self.model.decoder.embed_tokens.variables["params"]["embedding"].astype(self.dtype)
        return hidden_states.astype(self.dtype) @ embedding.T

    def encode(self, input_features: jax.Array, **kwargs: Any) -> BaseModelOutput:
        return self.model.encoder(input_features, **kwargs)

    def decode(
        self, decoder_input_ids: jax.Array, encoder_hidden_states: jax.Array | None, **kwargs: Any
    ) -> CausalLMOutputWithCrossAttentions:
        out = self.model.decoder(decoder_input_ids, encoder_hidden_states=encoder_hidden_states, **kwargs)
        return CausalLMOutputWithCrossAttentions(
            logits=self.logits(out.last_hidden_state),
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            cross_attentions=out.cross_attentions,
        )

    def init_cache(self, encoder_hidden_states: jax.Array, max_length: int) -> KVCache:
        return self.model.decoder.init_cache(encoder_hidden_states, max_length)

    def __call__(
        self,
        input_features: jax.Array,
        decoder_input_ids: jax.Array,
        decoder_attention_mask: jax.Array | None = None,
        decoder_position_ids: jax.Array | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
        labels: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
    ) -> Seq2SeqLMOutput:
        """Logits ``[b, T, vocab]``; with ``labels [b, T]`` also the mean cross-entropy over labels != -100."""
        outputs = self.model(
            input_features,
            decoder_input_ids,
            decoder_attention_mask,
            decoder_position_ids,
            output_attentions,
            output_hidden_states,
            deterministic,
            attention_mask,
        )
        logits = self.logits(outputs.last_hidden_state)
        return Seq2SeqLMOutput(
            loss=cross_entropy(logits, labels) if labels is not None else None,
            logits=logits,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )


class FlaxWhisperForConditionalGeneration(FlaxWhisperGenerationMixin, FlaxWhisperPreTrainedModel):
    """Whisper with the LM head and loss; ``generate`` compiles the whole greedy loop (``generation.py``)."""

    module_class = FlaxWhisperForConditionalGenerationModule

    def __init__(self, config: WhisperConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.max_target_positions = config.max_target_positions
        # Replaced by the checkpoint's generation_config.json when loaded from one.
        self.generation_config = GenerationConfig.from_model_config(config)

    def __call__(
        self,
        input_features: Any,
        decoder_input_ids: Any = None,
        attention_mask: Any = None,
        decoder_attention_mask: Any = None,
        position_ids: Any = None,
        decoder_position_ids: Any = None,
        labels: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        train: bool = False,
        params: Params | None = None,
        dropout_rng: jax.Array | None = None,
    ) -> Seq2SeqLMOutput | tuple:
        """Logits ``[b, T, vocab]``; with ``labels [b, T]`` also the loss (labels != -100).

        Without decoder inputs, the labels shifted right (start token first) are the decoder inputs.
        ``attention_mask [b, frames]`` (the processor's, 1 on real audio) only keeps SpecAugment's time spans
        on real frames in training; ``position_ids`` (encoder) are accepted for API compatibility and unused.
        """
        if labels is not None:
            labels = jnp.asarray(labels, jnp.int32)
            check_labels_length(labels.shape[1], self.max_target_positions)
            if decoder_input_ids is None:
                decoder_input_ids = shift_tokens_right(
                    labels, self.config.pad_token_id, self.config.decoder_start_token_id
                )
        if decoder_input_ids is None:
            raise ValueError("pass decoder_input_ids or labels")
        ids = jnp.asarray(decoder_input_ids, jnp.int32)
        out = self.module.apply(
            self._params(params),
            jnp.asarray(input_features, jnp.float32),
            ids,
            None if decoder_attention_mask is None else jnp.asarray(decoder_attention_mask),
            _default_positions(ids, decoder_attention_mask, decoder_position_ids),
            config_flag(output_attentions, self.config, "output_attentions"),
            config_flag(output_hidden_states, self.config, "output_hidden_states"),
            deterministic=not train,
            labels=labels,
            attention_mask=_frame_mask(attention_mask),
            rngs=_rngs(dropout_rng),
        )
        return out if config_flag(return_dict, self.config, "return_dict") else out.to_tuple()


class FlaxWhisperForAudioClassificationModule(nn.Module):
    """Encoder, optional softmax-weighted sum of all its hidden states, projection, mean over time, classifier.

    ``layer_weights`` is a trained parameter (as in PyTorch); transformers' Flax model keeps it a
    constant and cannot run ``use_weighted_layer_sum`` at all (it stacks the output object).
    """

    config: WhisperConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        config = self.config
        self.encoder = FlaxWhisperEncoder(config, self.dtype, self.param_dtype)
        num_layers = config.num_hidden_layers + 1  # the layers' outputs plus the embeddings
        if config.use_weighted_layer_sum:
            self.layer_weights = self.param(
                "layer_weights", lambda key, shape: jnp.full(shape, 1.0 / num_layers, self.param_dtype), (num_layers,)
            )
        self.projector = _dense(config.classifier_proj_size, config, self.dtype, self.param_dtype)
        self.classifier = _dense(config.num_labels, config, self.dtype, self.param_dtype)

    def __call__(
        self,
        input_features: jax.Array | None,
        encoder_outputs: BaseModelOutput | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
        labels: jax.Array | None = None,
    ) -> SequenceClassifierOutput:
        """Logits ``[b, num_labels]``; with ``labels [b]`` the loss (see :func:`classification_loss`)."""
        if self.config.use_weighted_layer_sum:
            output_hidden_states = True
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_features, output_attentions, output_hidden_states, deterministic)
        if self.config.use_weighted_layer_sum:
            stacked = jnp.stack(encoder_outputs.hidden_states, axis=1)  # [b, layers + 1, S, d]
            weights = jax.nn.softmax(self.layer_weights, axis=-1).reshape(-1, 1, 1)  # [layers + 1, 1, 1]
            hidden = (stacked * weights).sum(axis=1)  # [b, S, d]
        else:
            hidden = encoder_outputs.last_hidden_state
        pooled = self.projector(hidden).mean(axis=1)  # [b, classifier_proj_size]
        logits = self.classifier(pooled)
        return SequenceClassifierOutput(
            loss=classification_loss(logits, labels) if labels is not None else None,
            logits=logits,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )


class FlaxWhisperForAudioClassification(FlaxWhisperPreTrainedModel):
    """Audio classification head over the encoder (params ``encoder/...``, ``projector``, ``classifier``)."""

    has_classification_heads = True

    module_class = FlaxWhisperForAudioClassificationModule

    def _dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, jax.Array]:
        return {"input_features": jnp.zeros(input_shape, jnp.float32)}

    def __call__(
        self,
        input_features: Any,
        attention_mask: Any = None,
        encoder_outputs: Any = None,
        labels: Any = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        train: bool = False,
        params: Params | None = None,
        dropout_rng: jax.Array | None = None,
    ) -> SequenceClassifierOutput | tuple:
        """Logits ``[b, num_labels]``; with ``labels [b]`` the loss. ``attention_mask`` is unused."""
        out = self.module.apply(
            self._params(params),
            None if input_features is None else jnp.asarray(input_features, jnp.float32),
            None if encoder_outputs is None else as_encoder_output(encoder_outputs),
            config_flag(output_attentions, self.config, "output_attentions"),
            config_flag(output_hidden_states, self.config, "output_hidden_states"),
            deterministic=not train,
            labels=None if labels is None else jnp.asarray(labels),  # class ids, or targets for one label
            rngs=_rngs(dropout_rng),
        )
        return out if config_flag(return_dict, self.config, "return_dict") else out.to_tuple()
