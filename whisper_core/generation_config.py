"""``GenerationConfig``: decoding defaults read from and written to HF ``generation_config.json``.

Holds the Whisper-specific ids (language and task tokens, suppression lists, timestamp limits,
alignment heads) and the generic decoding knobs transformers users pass to ``generate``.
Unknown keys are kept and written back.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from .fileio import read_json, write_json
from .hub import resolve_file
from .languages import language_code

GENERATION_CONFIG_NAME = "generation_config.json"
MAX_INITIAL_TIMESTAMP_INDEX = 50  # 1 s: the value of HF's generation configs and openai-whisper's default

_DEFAULTS: dict[str, Any] = {
    # Whisper-specific ids.
    "decoder_start_token_id": 50257,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
    "pad_token_id": 50256,
    "no_timestamps_token_id": None,
    "prev_sot_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_decoder_ids": None,
    "lang_to_id": None,
    "task_to_id": None,
    "is_multilingual": None,
    "alignment_heads": None,
    "max_initial_timestamp_index": MAX_INITIAL_TIMESTAMP_INDEX,
    "return_timestamps": False,
    "language": None,
    "task": None,
    # Generic decoding knobs.
    "max_length": 448,
    "max_new_tokens": None,
    "num_beams": 1,
    "do_sample": False,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "length_penalty": 1.0,
    "num_return_sequences": 1,
    "output_scores": False,
    "return_dict_in_generate": False,
}


class GenerationConfig:
    """Decoding defaults (transformers 4.57 ``GenerationConfig`` keys used by Whisper)."""

    def __init__(self, **kwargs: Any) -> None:
        for key, default in _DEFAULTS.items():
            setattr(self, key, copy.deepcopy(kwargs.pop(key, default)))
        self.extra: dict[str, Any] = kwargs
        self.validate()

    def __getattr__(self, name: str) -> Any:
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"GenerationConfig has no attribute {name!r}")

    def validate(self) -> None:
        """Refuse values no ``generate`` could use, naming the key (a bad file fails when read, not later)."""
        for name in ("num_beams", "num_return_sequences", "max_length"):
            value = getattr(self, name, None)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_new_tokens", "top_k"):
            value = getattr(self, name, None)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name, low, high in (("temperature", 0.0, float("inf")), ("top_p", 0.0, 1.0)):
            value = getattr(self, name, None)
            if value is not None and (not isinstance(value, int | float) or not low <= value <= high):
                raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
        if self.task is not None and self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        languages = self.language if isinstance(self.language, list | tuple) else [self.language]
        for language in languages:
            if language is not None:
                language_code(language)  # raises ValueError for a language Whisper does not know

    @classmethod
    def from_model_config(cls, config: Any) -> GenerationConfig:
        """Derive the ids a model config carries (used when a checkpoint has no generation_config.json)."""
        keys = ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id", "suppress_tokens")
        values = {k: getattr(config, k) for k in keys}
        values["begin_suppress_tokens"] = config.begin_suppress_tokens
        values["max_length"] = config.max_target_positions
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = {k: copy.deepcopy(getattr(self, k)) for k in _DEFAULTS}
        data.update(copy.deepcopy(self.extra))
        return data

    def to_diff_dict(self) -> dict[str, Any]:
        """Only the keys that differ from the defaults, as transformers writes them."""
        return {k: v for k, v in self.to_dict().items() if k in self.extra or v != _DEFAULTS[k]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> GenerationConfig:
        return cls(**{**data, **overrides})

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **overrides: Any) -> GenerationConfig:
        path = Path(name_or_path)
        json_path = path if path.is_file() else resolve_file(name_or_path, GENERATION_CONFIG_NAME)
        return cls.from_dict(read_json(json_path), **overrides)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write every key that has a value: transformers' own defaults differ from Whisper's
        (``max_length`` 20, no start token, no timestamp limit), so nothing is left implicit."""
        path = Path(directory) / GENERATION_CONFIG_NAME
        write_json(path, {key: value for key, value in self.to_dict().items() if value is not None})
        return path

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set known keys; return the ones this config does not know (as transformers does)."""
        unused = {}
        for key, value in kwargs.items():
            if key in _DEFAULTS:
                setattr(self, key, value)
            else:
                unused[key] = value
        self.validate()
        return unused

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"GenerationConfig({self.to_diff_dict()})"
