"""PyTorch Whisper with the transformers 4.57 API and state-dict names.

Module and parameter names are transformers' (``model.encoder.layers.0.self_attn.q_proj.weight``,
``proj_out.weight`` tied to ``model.decoder.embed_tokens.weight``), so an HF state dict loads with
``strict=True`` and outputs match transformers to float32 rounding. Unlike transformers, the KV cache
is explicit and plain: a tuple with, per decoder layer, ``(self_k, self_v, cross_k, cross_v)`` each
``[batch, heads, seq, head_dim]``, passed in and returned.

Numerics: q is scaled by ``head_dim**-0.5`` before ``q @ k^T`` (as transformers and openai/whisper do;
scaling the product instead differs by rounding); LayerNorm and the explicit softmax run in float32
whatever the parameter dtype.

Loading (``from_pretrained`` through ``weights_bridge``) and ``generate`` are built on top of
``WhisperPreTrainedModel`` elsewhere; this module is only the networks.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from weights_bridge import pretrained
from whisper_core import modeling_rules
from whisper_core.config import WhisperConfig
from whisper_core.generation_config import GenerationConfig
from whisper_core.modeling_rules import check_labels_length, config_flag
from whisper_core.outputs import as_encoder_output

from .checkpoint import CheckpointMixin
from .generation import WhisperGenerationMixin
from .outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    KVCache,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
)


def _gelu_new(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def _gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


# The formulas transformers' ACT2FN uses for each ``config.activation_function`` name.
ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": _gelu_new,
    "gelu_fast": _gelu_fast,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """The encoder's fixed position table ``[length, channels]`` (:func:`whisper_core.modeling_rules.sinusoids`)
    in torch float32."""
    return modeling_rules.sinusoids(length, channels, max_timescale, xp=torch)


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher-forcing decoder inputs from labels ``[batch, seq]``: prepend the start token, drop the last
    token, and turn the loss-ignore value -100 into ``pad_token_id`` (it is not a valid token id)."""
    if pad_token_id is None:
        raise ValueError("config.pad_token_id must be set to build decoder inputs from labels")
    shifted = torch.full_like(input_ids, decoder_start_token_id)
    shifted[:, 1:] = input_ids[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


def _compute_mask_indices(
    shape: tuple[int, int],
    mask_prob: float,
    mask_length: int,
    attention_mask: torch.Tensor | None = None,
    min_masks: int = 0,
) -> np.ndarray:
    """SpecAugment spans: a bool mask ``[batch, length]`` of ``mask_length``-long spans (they may overlap).

    Each row gets ``int(mask_prob * input_length / mask_length + u)`` spans with one ``u ~ U[0, 1)`` per
    call (probabilistic rounding), at least ``min_masks``, at most what fits; span starts are drawn
    without replacement. Semantics and random draws (NumPy's global RNG, in the same order) are those of
    transformers, so a seeded run masks the same frames. ``attention_mask`` (right padding) shortens rows.
    """
    batch_size, length = shape
    if mask_length < 1:
        raise ValueError("mask_length must be at least 1")
    if mask_length > length:
        raise ValueError(f"mask_length ({mask_length}) must not exceed the masked axis length ({length})")
    epsilon = np.random.rand(1).item()

    def num_spans(input_length: int) -> int:
        n = max(int(mask_prob * input_length / mask_length + epsilon), min_masks)
        n = min(n, length // mask_length)
        return max(min(n, input_length - (mask_length - 1)), 0)

    mask = np.zeros((batch_size, length), dtype=bool)
    if num_spans(length) == 0:
        return mask
    lengths = attention_mask.detach().sum(-1).tolist() if attention_mask is not None else [length] * batch_size
    for row, input_length in enumerate(lengths):
        n = num_spans(int(input_length))
        starts = np.random.choice(np.arange(input_length - (mask_length - 1)), n, replace=False)
        if n == 0:
            # transformers pads empty rows with the last index (a padding frame when the row is short).
            mask[row, length - 1] = True
        mask[row, (starts[:, None] + np.arange(mask_length)).reshape(-1)] = True
    return mask


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back, so fp16/bf16 models keep precise statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


def decoder_attention_mask(
    q_len: int, past_len: int, padding_mask: torch.Tensor | None, device: torch.device
) -> torch.Tensor | None:
    """Bool mask ``[batch or 1, 1, q_len, past_len + q_len]``, True where a query may attend.

    Query ``i`` sits at absolute position ``past_len + i`` and sees keys up to it (causal), minus keys
    whose ``padding_mask [batch, past_len + q_len]`` is 0. ``None`` when nothing needs masking (one new
    token, no padding). A fixed-size cache would build this from its write index instead.
    """
    kv_len = past_len + q_len
    if padding_mask is None and q_len == 1:
        return None
    query_pos = torch.arange(past_len, kv_len, device=device)[:, None]  # [q_len, 1]
    mask = (torch.arange(kv_len, device=device)[None, :] <= query_pos)[None, None]  # [1, 1, q_len, kv_len]
    if padding_mask is not None:
        mask = mask & padding_mask[:, None, None, :kv_len].to(device=device, dtype=torch.bool)
        # A query that sees nothing (a left-padding token) is let see itself: a fully masked row gives
        # NaN, and NaN keys/values would leak into real rows in the next layer (0 * NaN).
        itself = (torch.arange(kv_len, device=device)[None, :] == query_pos)[None, None]
        mask = mask | (itself & ~mask.any(dim=-1, keepdim=True))
    return mask


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    head_mask: torch.Tensor | None = None,
    output_attentions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax(q k^T) v with ``q [b, h, T, hd]`` already scaled, ``k, v [b, h, S, hd]``, bool ``mask``.

    Uses the fused ``scaled_dot_product_attention`` unless the weights themselves are wanted (or a head
    mask must multiply them); then the scores are computed explicitly with the softmax in float32.
    Returns ``(out [b, h, T, hd], weights [b, h, T, S] or None)``.
    """
    if not output_attentions and head_mask is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=1.0), None
    scores = q @ k.transpose(-1, -2)  # [b, h, T, S]
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.float().softmax(dim=-1).to(q.dtype)
    if head_mask is not None:
        weights = weights * head_mask.view(1, -1, 1, 1)
    weights = F.dropout(weights, p=dropout_p, training=dropout_p > 0)
    return weights @ v, weights


class WhisperAttention(nn.Module):
    """Multi-head attention; self-attention when ``key_value_states`` is None, else cross-attention."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = dropout
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=False)  # Whisper's key projection has no bias
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)  # [b, s, d] -> [b, h, s, hd]

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        past_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        layer_head_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
        """``hidden_states [b, T, d]`` -> ``(out [b, T, d], weights or None, (k, v) [b, h, S, hd])``.

        Self-attention appends this step's k/v to ``past_key_value``; cross-attention reuses
        ``past_key_value`` unchanged when given (the encoder output does not change while decoding),
        else projects ``key_value_states [b, S, d]``. The returned (k, v) is the cache for next time.
        """
        batch, q_len, _ = hidden_states.shape
        q = self._split_heads(self.q_proj(hidden_states) * self.scaling)
        if key_value_states is None:
            k = self._split_heads(self.k_proj(hidden_states))
            v = self._split_heads(self.v_proj(hidden_states))
            if past_key_value is not None:
                k = torch.cat([past_key_value[0], k], dim=2)  # [b, h, past + T, hd]
                v = torch.cat([past_key_value[1], v], dim=2)
        elif past_key_value is not None:
            k, v = past_key_value
        else:
            k = self._split_heads(self.k_proj(key_value_states))
            v = self._split_heads(self.v_proj(key_value_states))
        dropout_p = self.dropout if self.training else 0.0
        out, weights = attend(q, k, v, attention_mask, dropout_p, layer_head_mask, output_attentions)
        out = out.transpose(1, 2).reshape(batch, q_len, self.embed_dim)  # [b, h, T, hd] -> [b, T, d]
        return self.out_proj(out), weights, (k, v)


class WhisperEncoderLayer(nn.Module):
    """Pre-norm block: x + SelfAttn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__()
        d = config.d_model
        self.self_attn = WhisperAttention(d, config.encoder_attention_heads, config.attention_dropout)
        self.self_attn_layer_norm = LayerNorm(d)
        self.dropout = config.dropout
        self.activation_fn = ACTIVATIONS[config.activation_function]
        self.activation_dropout = config.activation_dropout
        self.fc1 = nn.Linear(d, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, d)
        self.final_layer_norm = LayerNorm(d)

    def forward(
        self, x: torch.Tensor, layer_head_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, weights, _ = self.self_attn(
            self.self_attn_layer_norm(x), layer_head_mask=layer_head_mask, output_attentions=output_attentions
        )
        x = x + F.dropout(h, p=self.dropout, training=self.training)
        x = x + self._mlp(self.final_layer_norm(x))
        if x.dtype == torch.float16:  # as transformers: keep fp16 activations finite
            limit = torch.finfo(x.dtype).max - 1000
            x = x.clamp(min=-limit, max=limit)
        return x, weights

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(self.activation_fn(self.fc1(x)), p=self.activation_dropout, training=self.training)
        return F.dropout(self.fc2(x), p=self.dropout, training=self.training)


class WhisperDecoderLayer(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to the encoder, MLP."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__()
        d = config.d_model
        self.self_attn = WhisperAttention(d, config.decoder_attention_heads, config.attention_dropout)
        self.dropout = config.dropout
        self.activation_fn = ACTIVATIONS[config.activation_function]
        self.activation_dropout = config.activation_dropout
        self.self_attn_layer_norm = LayerNorm(d)
        self.encoder_attn = WhisperAttention(d, config.decoder_attention_heads, config.attention_dropout)
        self.encoder_attn_layer_norm = LayerNorm(d)
        self.fc1 = nn.Linear(d, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, d)
        self.final_layer_norm = LayerNorm(d)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        layer_head_mask: torch.Tensor | None = None,
        cross_attn_layer_head_mask: torch.Tensor | None = None,
        past_key_value: tuple[torch.Tensor, ...] | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, tuple[torch.Tensor, ...]]:
        """``x [b, T, d]`` -> ``(x, self weights, cross weights, (self_k, self_v, cross_k, cross_v))``."""
        self_past = past_key_value[:2] if past_key_value is not None else None
        cross_past = past_key_value[2:] if past_key_value is not None and past_key_value[2] is not None else None
        h, self_weights, self_kv = self.self_attn(
            self.self_attn_layer_norm(x),
            past_key_value=self_past,
            attention_mask=attention_mask,
            layer_head_mask=layer_head_mask,
            output_attentions=output_attentions,
        )
        x = x + F.dropout(h, p=self.dropout, training=self.training)
        cross_weights, cross_kv = None, (None, None)
        if encoder_hidden_states is not None or cross_past is not None:
            h, cross_weights, cross_kv = self.encoder_attn(
                self.encoder_attn_layer_norm(x),
                key_value_states=encoder_hidden_states,
                past_key_value=cross_past,
                layer_head_mask=cross_attn_layer_head_mask,
                output_attentions=output_attentions,
            )
            x = x + F.dropout(h, p=self.dropout, training=self.training)
        h = self.final_layer_norm(x)
        h = F.dropout(self.activation_fn(self.fc1(h)), p=self.activation_dropout, training=self.training)
        x = x + F.dropout(self.fc2(h), p=self.dropout, training=self.training)
        return x, self_weights, cross_weights, (*self_kv, *cross_kv)


class WhisperPreTrainedModel(CheckpointMixin, nn.Module):
    """What every Whisper model shares: ``config``, weight init, dtype/device.

    This is the extension point for checkpoint I/O (``from_pretrained``/``save_pretrained`` through
    ``weights_bridge``) and for generation; subclasses only define the networks.
    """

    config_class = WhisperConfig
    base_model_prefix = "model"
    main_input_name = "input_features"

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' init: normal(0, init_std) for linear/conv/embedding weights (pad row zero),
        zero biases, unit LayerNorms, sinusoids for the encoder positions, uniform layer weights."""
        std = self.config.init_std
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            module.weight.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, WhisperEncoder):
            module.embed_positions.weight.copy_(sinusoids(*module.embed_positions.weight.shape))
        elif isinstance(module, WhisperForAudioClassification) and self.config.use_weighted_layer_sum:
            module.layer_weights.fill_(1.0 / (self.config.num_hidden_layers + 1))

    def post_init(self) -> None:
        """Initialise every module not yet initialised, children before parents (so the encoder's
        sinusoids overwrite the generic embedding init), unless a checkpoint is about to give every weight
        (:func:`weights_bridge.pretrained.weights_to_come`), then tie the output projection."""
        for module in [] if pretrained.weights_to_come() else reversed(list(self.modules())):
            if not getattr(module, "_whisper_initialized", False):
                self._init_weights(module)
                module._whisper_initialized = True
        self.tie_weights()

    def tie_weights(self) -> None:
        output, inputs = self.get_output_embeddings(), self.get_input_embeddings()
        if output is not None and self.config.tie_word_embeddings:
            output.weight = inputs.weight

    def get_input_embeddings(self) -> nn.Module:
        raise NotImplementedError(type(self).__name__)

    def get_output_embeddings(self) -> nn.Module | None:
        return None

    def _get_feat_extract_output_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        """Encoder output frames for ``input_lengths`` mel frames (conv2 has stride 2)."""
        return (input_lengths - 1) // 2 + 1


class WhisperEncoder(WhisperPreTrainedModel):
    """Two GELU convolutions (the second halves time), fixed sinusoidal positions, pre-norm layers."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        d = config.d_model
        self.dropout = config.dropout
        self.layerdrop = config.encoder_layerdrop
        self.num_mel_bins = config.num_mel_bins
        self.max_source_positions = config.max_source_positions
        self.conv1 = nn.Conv1d(config.num_mel_bins, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(config.max_source_positions, d)
        self.embed_positions.requires_grad_(False)  # sinusoids, not trained (as transformers)
        self.layers = nn.ModuleList([WhisperEncoderLayer(config) for _ in range(config.encoder_layers)])
        self.layer_norm = LayerNorm(d)
        self.post_init()

    def _freeze_parameters(self) -> None:
        self.requires_grad_(False)

    def get_input_embeddings(self) -> nn.Module:
        return self.conv1

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.conv1 = value

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput | tuple:
        """``input_features [b, num_mel_bins, 2 * max_source_positions]`` -> states ``[b, max_source_positions, d]``.

        ``attention_mask`` is accepted for API compatibility and unused: Whisper always sees 30 s of
        (padded) audio, which is why the frame count must be exact.
        """
        output_attentions = config_flag(output_attentions, self.config, "output_attentions")
        output_hidden_states = config_flag(output_hidden_states, self.config, "output_hidden_states")
        return_dict = config_flag(return_dict, self.config, "return_dict")
        expected_frames = self.max_source_positions * self.conv1.stride[0] * self.conv2.stride[0]
        if input_features.ndim != 3 or input_features.shape[1] != self.num_mel_bins:
            raise ValueError(
                f"Whisper expects input_features of shape (batch, {self.num_mel_bins}, {expected_frames}), "
                f"got {tuple(input_features.shape)}"
            )
        if input_features.shape[-1] != expected_frames:
            raise ValueError(
                f"Whisper expects the mel input features to be of length {expected_frames}, but found "
                f"{input_features.shape[-1]}. Make sure to pad the input mel features to {expected_frames}."
            )
        if head_mask is not None and head_mask.shape[0] != len(self.layers):
            raise ValueError(f"head_mask must have {len(self.layers)} rows (one per layer), got {head_mask.shape[0]}")
        x = input_features.to(self.conv1.weight.dtype)
        x = F.gelu(self.conv1(x))  # [b, d, frames]
        x = F.gelu(self.conv2(x))  # [b, d, frames / 2]
        x = x.permute(0, 2, 1) + self.embed_positions.weight  # [b, frames / 2, d]
        x = F.dropout(x, p=self.dropout, training=self.training)

        hidden_states, attentions = [], []
        for idx, layer in enumerate(self.layers):
            if output_hidden_states:
                hidden_states.append(x)
            # LayerDrop: draw for every layer in training (as transformers, so seeded runs agree).
            dropped = self.training and torch.rand([]) < self.layerdrop
            weights = None
            if not dropped:
                x, weights = layer(x, head_mask[idx] if head_mask is not None else None, output_attentions)
            attentions.append(weights)
        x = self.layer_norm(x)
        hidden_states.append(x)

        out = BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )
        return out if return_dict else out.to_tuple()


class WhisperDecoder(WhisperPreTrainedModel):
    """Token + learned position embeddings, pre-norm layers with causal self- and cross-attention."""

    main_input_name = "input_ids"

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        d = config.d_model
        self.dropout = config.dropout
        self.layerdrop = config.decoder_layerdrop
        self.padding_idx = config.pad_token_id
        self.max_target_positions = config.max_target_positions
        self.embed_tokens = nn.Embedding(config.vocab_size, d, self.padding_idx)
        self.embed_positions = nn.Embedding(config.max_target_positions, d)
        self.layers = nn.ModuleList([WhisperDecoderLayer(config) for _ in range(config.decoder_layers)])
        self.layer_norm = LayerNorm(d)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPastAndCrossAttentions | tuple:
        """``input_ids [b, T]`` (only the new tokens when ``past_key_values`` is given) -> ``[b, T, d]``.

        Positions continue from the cached length unless ``position_ids [b, T]`` are given.
        ``attention_mask [b, past + T]`` marks real (1) and padding (0) tokens on top of causality.
        """
        output_attentions = config_flag(output_attentions, self.config, "output_attentions")
        output_hidden_states = config_flag(output_hidden_states, self.config, "output_hidden_states")
        use_cache = config_flag(use_cache, self.config, "use_cache")
        return_dict = config_flag(return_dict, self.config, "return_dict")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of decoder_input_ids and decoder_inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # [b, T, d]
        for mask, name in ((head_mask, "head_mask"), (cross_attn_head_mask, "cross_attn_head_mask")):
            if mask is not None and mask.shape[0] != len(self.layers):
                raise ValueError(f"{name} must have {len(self.layers)} rows (one per layer), got {mask.shape[0]}")
        if past_key_values is not None and len(past_key_values) != len(self.layers):
            raise ValueError(f"past_key_values has {len(past_key_values)} layers, the decoder {len(self.layers)}")
        q_len = inputs_embeds.shape[1]
        past_len = past_key_values[0][0].shape[2] if past_key_values is not None else 0
        if position_ids is None:
            positions = self.embed_positions.weight[past_len : past_len + q_len]  # [T, d]
        else:
            positions = self.embed_positions.weight[position_ids]  # [b, T, d]
        x = F.dropout(inputs_embeds + positions, p=self.dropout, training=self.training)
        mask = decoder_attention_mask(q_len, past_len, attention_mask, x.device)

        hidden_states, self_attentions, cross_attentions, cache = [], [], [], []
        for idx, layer in enumerate(self.layers):
            if output_hidden_states:
                hidden_states.append(x)
            layer_past = past_key_values[idx] if past_key_values is not None else None
            if self.training and torch.rand([]) < self.layerdrop:  # LayerDrop: the cache entry stays as it was
                cache.append(layer_past)
                continue
            x, self_weights, cross_weights, present = layer(
                x,
                attention_mask=mask,
                encoder_hidden_states=encoder_hidden_states,
                layer_head_mask=head_mask[idx] if head_mask is not None else None,
                cross_attn_layer_head_mask=cross_attn_head_mask[idx] if cross_attn_head_mask is not None else None,
                past_key_value=layer_past,
                output_attentions=output_attentions,
            )
            self_attentions.append(self_weights)
            cross_attentions.append(cross_weights)
            cache.append(present)
        x = self.layer_norm(x)
        hidden_states.append(x)

        with_cross = output_attentions and encoder_hidden_states is not None
        out = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=x,
            past_key_values=tuple(cache) if use_cache else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(self_attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if with_cross else None,
        )
        return out if return_dict else out.to_tuple()


class WhisperModel(WhisperPreTrainedModel):
    """Encoder + decoder, returning the decoder's last hidden state (no LM head)."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        self.decoder = WhisperDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.decoder.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.decoder.embed_tokens = value

    def get_encoder(self) -> WhisperEncoder:
        return self.encoder

    def get_decoder(self) -> WhisperDecoder:
        return self.decoder

    def freeze_encoder(self) -> None:
        """Stop gradients into the encoder (fine-tune the decoder only)."""
        self.encoder._freeze_parameters()

    def _mask_input_features(
        self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """SpecAugment in training when ``config.apply_spec_augment``: zero random spans of frames
        (``mask_time_*``, ``attention_mask [b, frames]`` limits them to real frames) and of mel bins
        (``mask_feature_*``). Returns a new tensor; the caller's features are left untouched."""
        if not self.config.apply_spec_augment or not self.training:
            return input_features
        batch, bins, frames = input_features.shape
        if self.config.mask_time_prob > 0:
            time_mask = _compute_mask_indices(
                (batch, frames),
                mask_prob=self.config.mask_time_prob,
                mask_length=self.config.mask_time_length,
                attention_mask=attention_mask,
                min_masks=self.config.mask_time_min_masks,
            )
            time_mask = torch.from_numpy(time_mask).to(input_features.device)[:, None, :]  # [b, 1, frames]
            input_features = input_features.masked_fill(time_mask, 0.0)
        if self.config.mask_feature_prob > 0:
            bin_mask = _compute_mask_indices(
                (batch, bins),
                mask_prob=self.config.mask_feature_prob,
                mask_length=self.config.mask_feature_length,
                min_masks=self.config.mask_feature_min_masks,
            )
            bin_mask = torch.from_numpy(bin_mask).to(input_features.device)[:, :, None]  # [b, bins, 1]
            input_features = input_features.masked_fill(bin_mask, 0.0)
        return input_features

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        past_key_values: KVCache | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        decoder_position_ids: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> Seq2SeqModelOutput | tuple:
        """Run the encoder (unless ``encoder_outputs`` are given) and the decoder on its last state."""
        return_dict = config_flag(return_dict, self.config, "return_dict")
        if encoder_outputs is None:
            if input_features is None:
                raise ValueError("pass input_features or encoder_outputs")
            encoder_outputs = self.encoder(
                self._mask_input_features(input_features, attention_mask=attention_mask),
                head_mask=head_mask,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
        encoder_outputs = as_encoder_output(encoder_outputs)
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            past_key_values=past_key_values,
            inputs_embeds=decoder_inputs_embeds,
            position_ids=decoder_position_ids,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        out = Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            past_key_values=decoder_outputs.past_key_values,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )
        return out if return_dict else out.to_tuple()


def summed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the float32 cross-entropies, count) of ``logits [..., vocab]`` over the ``labels [...]`` that
    are not -100; fine-tuning sums over micro-batches and divides once by the whole batch's count.

    Computed as logsumexp minus the label's logit: torch's float32 ``log_softmax`` (inside
    ``F.cross_entropy``) drifts by about 1e-5 relative over Whisper's 51,865-token vocabulary on CPU,
    ``logsumexp`` stays within 1e-7 of the float64 value, and the gradient is the same.
    """
    logits = logits.reshape(-1, logits.shape[-1]).float()
    labels = labels.reshape(-1)
    valid = labels != -100
    picked = logits.gather(-1, labels.clamp(min=0)[:, None])[:, 0]
    return (torch.logsumexp(logits, dim=-1) - picked)[valid].sum(), valid.sum()


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (float32) of ``logits [..., vocab]`` over the ``labels [...]`` that are not -100."""
    total, count = summed_cross_entropy(logits, labels)
    return total / count


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits [b, num_labels]`` against class ids ``labels [b]``; with one label, the
    mean squared error against target values (regression). transformers 4.57's docstring promises this,
    its code uses cross-entropy for one label too, which is always 0 and trains nothing."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits[:, 0].float(), labels.float())
    return F.cross_entropy(logits.float(), labels.view(-1))


class WhisperForConditionalGeneration(WhisperGenerationMixin, WhisperPreTrainedModel):
    """``WhisperModel`` with the LM head ``proj_out`` (tied to the token embedding) and the LM loss."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        self.model = WhisperModel(config)
        self.proj_out = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.max_target_positions = config.max_target_positions
        # Replaced by the checkpoint's generation_config.json when loaded from one.
        self.generation_config = GenerationConfig.from_model_config(config)
        self.post_init()

    def get_encoder(self) -> WhisperEncoder:
        return self.model.get_encoder()

    def get_decoder(self) -> WhisperDecoder:
        return self.model.get_decoder()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.proj_out

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.proj_out = value

    def freeze_encoder(self) -> None:
        """Stop gradients into the encoder (fine-tune the decoder only)."""
        self.model.encoder._freeze_parameters()

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        past_key_values: KVCache | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        decoder_position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> Seq2SeqLMOutput | tuple:
        """Logits ``[b, T, vocab]``; with ``labels [b, T]`` also the mean cross-entropy over labels != -100.

        Without decoder inputs, the labels shifted right (start token first) are the decoder inputs.
        """
        return_dict = config_flag(return_dict, self.config, "return_dict")
        if labels is not None:
            check_labels_length(labels.shape[1], self.max_target_positions)
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = shift_tokens_right(
                    labels, self.config.pad_token_id, self.config.decoder_start_token_id
                )
        outputs = self.model(
            input_features,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            head_mask=head_mask,
            decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            encoder_outputs=encoder_outputs,
            past_key_values=past_key_values,
            decoder_inputs_embeds=decoder_inputs_embeds,
            decoder_position_ids=decoder_position_ids,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.proj_out(outputs.last_hidden_state)  # [b, T, vocab]
        loss = None
        if labels is not None:
            loss = token_cross_entropy(logits, labels.to(logits.device))
        out = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )
        return out if return_dict else out.to_tuple()


class WhisperForAudioClassification(WhisperPreTrainedModel):
    """Encoder, optional softmax-weighted sum of all its hidden states, projection, mean over time, classifier."""

    has_classification_heads = True

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        num_layers = config.num_hidden_layers + 1  # the layers' outputs plus the embeddings
        if config.use_weighted_layer_sum:
            self.layer_weights = nn.Parameter(torch.ones(num_layers) / num_layers)
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)
        self.post_init()

    def freeze_encoder(self) -> None:
        """Stop gradients into the encoder: only the projector and classifier (and layer weights) train."""
        self.encoder._freeze_parameters()

    def get_encoder(self) -> WhisperEncoder:
        return self.encoder

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        """Logits ``[b, num_labels]``; with ``labels [b]`` the loss (see :func:`classification_loss`)."""
        return_dict = config_flag(return_dict, self.config, "return_dict")
        if self.config.use_weighted_layer_sum:
            output_hidden_states = True
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_features,
                head_mask=head_mask,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
        encoder_outputs = as_encoder_output(encoder_outputs)
        if self.config.use_weighted_layer_sum:
            stacked = torch.stack(encoder_outputs.hidden_states, dim=1)  # [b, layers + 1, S, d]
            weights = self.layer_weights.softmax(dim=-1).view(-1, 1, 1)  # [layers + 1, 1, 1]
            hidden = (stacked * weights).sum(dim=1)  # [b, S, d]
        else:
            hidden = encoder_outputs.last_hidden_state
        pooled = self.projector(hidden).mean(dim=1)  # [b, classifier_proj_size]
        logits = self.classifier(pooled)
        loss = None
        if labels is not None:
            loss = classification_loss(logits, labels.to(logits.device))
        out = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=encoder_outputs.hidden_states, attentions=encoder_outputs.attentions
        )
        return out if return_dict else out.to_tuple()
