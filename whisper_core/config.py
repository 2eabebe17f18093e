"""``WhisperConfig``: the model's hyper-parameters, read from and written to HF ``config.json``.

Defaults and names are those of transformers 4.57 (a tiny-like model), so a ``config.json``
written by transformers loads unchanged, and keys this class does not know are kept and
written back on save.
"""

from __future__ import annotations

import copy
import inspect
import os
from pathlib import Path
from typing import Any

from .fileio import read_json, write_json
from .hub import resolve_file

CONFIG_NAME = "config.json"
# Facts about OpenAI's vocabularies: the multilingual one has 51865 tokens (51866 for large-v3), the
# English-only one 51864; openai-whisper tells them apart by n_vocab >= 51865.
MULTILINGUAL_VOCAB_SIZE = 51865

# transformers' attribute_map: alias -> the attribute it stands for.
ATTRIBUTE_ALIASES = {
    "num_attention_heads": "encoder_attention_heads",
    "hidden_size": "d_model",
    "num_hidden_layers": "encoder_layers",
}
ACTIVATIONS = ("gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "quick_gelu", "relu", "silu", "swish", "tanh")


class WhisperConfig:
    """Hyper-parameters of a Whisper model (transformers 4.57 ``WhisperConfig``)."""

    model_type = "whisper"

    def __init__(
        self,
        vocab_size: int = 51865,
        num_mel_bins: int = 80,
        encoder_layers: int = 4,
        encoder_attention_heads: int = 6,
        decoder_layers: int = 4,
        decoder_attention_heads: int = 6,
        decoder_ffn_dim: int = 1536,
        encoder_ffn_dim: int = 1536,
        encoder_layerdrop: float = 0.0,
        decoder_layerdrop: float = 0.0,
        decoder_start_token_id: int = 50257,
        use_cache: bool = True,
        is_encoder_decoder: bool = True,
        activation_function: str = "gelu",
        d_model: int = 384,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        init_std: float = 0.02,
        scale_embedding: bool = False,
        max_source_positions: int = 1500,
        max_target_positions: int = 448,
        pad_token_id: int = 50256,
        bos_token_id: int = 50256,
        eos_token_id: int = 50256,
        suppress_tokens: list[int] | None = None,
        begin_suppress_tokens: list[int] | None = (220, 50256),
        use_weighted_layer_sum: bool = False,
        classifier_proj_size: int = 256,
        apply_spec_augment: bool = False,
        mask_time_prob: float = 0.05,
        mask_time_length: int = 10,
        mask_time_min_masks: int = 2,
        mask_feature_prob: float = 0.0,
        mask_feature_length: int = 10,
        mask_feature_min_masks: int = 0,
        median_filter_width: int = 7,
        tie_word_embeddings: bool = True,
        num_labels: int | None = None,
        id2label: dict[int, str] | None = None,
        label2id: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        # transformers' attribute_map aliases are accepted as keyword arguments too.
        aliased = {name: kwargs.pop(alias) for alias, name in ATTRIBUTE_ALIASES.items() if alias in kwargs}
        encoder_attention_heads = aliased.get("encoder_attention_heads", encoder_attention_heads)
        d_model = aliased.get("d_model", d_model)
        encoder_layers = aliased.get("encoder_layers", encoder_layers)
        self.vocab_size = vocab_size
        self.num_mel_bins = num_mel_bins
        self.encoder_layers = encoder_layers
        self.encoder_attention_heads = encoder_attention_heads
        self.decoder_layers = decoder_layers
        self.decoder_attention_heads = decoder_attention_heads
        self.decoder_ffn_dim = decoder_ffn_dim
        self.encoder_ffn_dim = encoder_ffn_dim
        self.encoder_layerdrop = encoder_layerdrop
        self.decoder_layerdrop = decoder_layerdrop
        self.decoder_start_token_id = decoder_start_token_id
        self.use_cache = use_cache
        self.is_encoder_decoder = is_encoder_decoder
        self.activation_function = activation_function
        self.d_model = d_model
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.init_std = init_std
        self.scale_embedding = scale_embedding
        self.max_source_positions = max_source_positions
        self.max_target_positions = max_target_positions
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.suppress_tokens = list(suppress_tokens) if suppress_tokens is not None else None
        self.begin_suppress_tokens = list(begin_suppress_tokens) if begin_suppress_tokens is not None else None
        self.use_weighted_layer_sum = use_weighted_layer_sum
        self.classifier_proj_size = classifier_proj_size
        self.apply_spec_augment = apply_spec_augment
        self.mask_time_prob = mask_time_prob
        self.mask_time_length = mask_time_length
        self.mask_time_min_masks = mask_time_min_masks
        self.mask_feature_prob = mask_feature_prob
        self.mask_feature_length = mask_feature_length
        self.mask_feature_min_masks = mask_feature_min_masks
        self.median_filter_width = median_filter_width
        self.tie_word_embeddings = tie_word_embeddings
        self.id2label, self.label2id = _labels(num_labels, id2label, label2id)
        # Everything else (architectures, torch_dtype, forced_decoder_ids, ...) is kept as is.
        self.extra: dict[str, Any] = {k: v for k, v in kwargs.items() if k not in ("model_type",)}
        self.validate()

    # -- derived ---------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def num_attention_heads(self) -> int:
        return self.encoder_attention_heads

    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_hidden_layers(self) -> int:
        return self.encoder_layers

    def __getattr__(self, name: str) -> Any:
        # Unknown keys read like attributes, as on a transformers config.
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # -- checks ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent value."""
        positive = [
            "vocab_size",
            "num_mel_bins",
            "encoder_layers",
            "encoder_attention_heads",
            "decoder_layers",
            "decoder_attention_heads",
            "decoder_ffn_dim",
            "encoder_ffn_dim",
            "d_model",
            "max_source_positions",
            "max_target_positions",
        ]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"WhisperConfig.{name} must be a positive integer, got {value!r}")
        for heads in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.d_model % getattr(self, heads):
                raise ValueError(f"d_model ({self.d_model}) must be divisible by {heads} ({getattr(self, heads)})")
        for name in ("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "decoder_layerdrop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"WhisperConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("mask_time_prob", "mask_feature_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"WhisperConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(f"unsupported activation_function {self.activation_function!r}; choose from {ACTIVATIONS}")
        for name in ("decoder_start_token_id", "pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"WhisperConfig.{name}={value} is outside the vocabulary (vocab_size={self.vocab_size})"
                )

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """All keys, HF spelling, ready for ``config.json``."""
        data = {k: copy.deepcopy(v) for k, v in vars(self).items() if k not in ("extra", "id2label", "label2id")}
        data["id2label"] = dict(self.id2label)
        data["label2id"] = dict(self.label2id)
        data["num_hidden_layers"] = self.encoder_layers  # transformers writes this alias too
        data.update(copy.deepcopy(self.extra))
        data["model_type"] = self.model_type
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> WhisperConfig:
        """A config from ``config.json`` contents; ``overrides`` win. Overriding ``num_labels`` alone
        drops the stored label maps (a new classification head gets default labels), as transformers does."""
        if "num_labels" in overrides and "id2label" not in overrides:
            data = {k: v for k, v in data.items() if k not in ("id2label", "label2id")}
        for alias, name in ATTRIBUTE_ALIASES.items():
            if alias in overrides or name in overrides:  # a stored alias must not beat an override
                data = {k: v for k, v in data.items() if k not in (alias, name)}
        data = {**data, **overrides}
        model_type = data.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ValueError(f"config has model_type {model_type!r}, expected {cls.model_type!r}")
        return cls(**data)

    def with_overrides(self, **overrides: Any) -> WhisperConfig:
        """A copy with ``overrides`` applied, as ``from_pretrained(..., dropout=0.1)`` passes them.

        A key that is neither a config field (nor a transformers alias of one) nor already stored in
        this config is refused: it is most likely a loading option this library does not have, and
        keeping it silently would also write it into ``config.json``.
        """
        data = self.to_dict()
        known = set(inspect.signature(type(self).__init__).parameters) | set(ATTRIBUTE_ALIASES) | set(data)
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {unknown}: not WhisperConfig fields")
        return type(self).from_dict(data, **overrides) if overrides else self

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **overrides: Any) -> WhisperConfig:
        """Read ``config.json`` from a checkpoint directory, a JSON file, or a hub id."""
        path = Path(name_or_path)
        json_path = path if path.is_file() else resolve_file(name_or_path, CONFIG_NAME)
        return cls.from_dict(read_json(json_path), **overrides)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / CONFIG_NAME
        write_json(path, self.to_dict())
        return path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WhisperConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        shown = ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "vocab_size", "num_mel_bins")
        return f"WhisperConfig({', '.join(f'{k}={getattr(self, k)}' for k in shown)})"


def _labels(
    num_labels: int | None, id2label: dict | None, label2id: dict | None
) -> tuple[dict[int, str], dict[str, int]]:
    """Normalise the classification label maps the way transformers does (int keys, default 2)."""
    if id2label is not None:
        id2label = {int(k): v for k, v in id2label.items()}
        if num_labels is not None and num_labels != len(id2label):
            raise ValueError(f"num_labels={num_labels} disagrees with id2label ({len(id2label)} labels)")
    else:
        id2label = {i: f"LABEL_{i}" for i in range(2 if num_labels is None else num_labels)}
    label2id = (
        {str(k): int(v) for k, v in label2id.items()} if label2id is not None else {v: k for k, v in id2label.items()}
    )
    return id2label, label2id
