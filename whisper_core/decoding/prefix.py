"""The decoder prompt of a ``generate`` call: prompt, ``<|startoftranscript|>``, language, task, timestamps.

Follows transformers 4.57 (``_retrieve_init_tokens``) and openai-whisper: multilingual models
get a language token (given, or detected when ``None``) and a task token (transcribe by default);
English-only models get neither and refuse a language or task; ``<|notimestamps|>`` closes the
prefix unless timestamps are requested. A ``<|startofprev|>`` prompt goes first, cut to the
last ``max_target_positions // 2 - 1`` tokens as openai-whisper does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..languages import check_task, language_code

TRANSCRIBE, TRANSLATE = "transcribe", "translate"


@dataclass(frozen=True)
class PrefixIds:
    """The special token ids that make up decoder prompts (from generation_config.json)."""

    decoder_start_token_id: int
    no_timestamps_token_id: int
    prev_sot_token_id: int | None
    lang_to_id: dict[str, int]
    task_to_id: dict[str, int]
    is_multilingual: bool

    @classmethod
    def from_generation_config(cls, generation_config: Any) -> PrefixIds:
        if generation_config.no_timestamps_token_id is None:
            raise ValueError("generation_config has no no_timestamps_token_id: it is not a Whisper generation config")
        lang_to_id = dict(generation_config.lang_to_id or {})
        is_multilingual = generation_config.is_multilingual
        return cls(
            decoder_start_token_id=generation_config.decoder_start_token_id,
            no_timestamps_token_id=generation_config.no_timestamps_token_id,
            prev_sot_token_id=generation_config.prev_sot_token_id,
            lang_to_id=lang_to_id,
            task_to_id=dict(generation_config.task_to_id or {}),
            is_multilingual=bool(lang_to_id) if is_multilingual is None else bool(is_multilingual),
        )

    @classmethod
    def for_language_detection(cls, generation_config: Any) -> PrefixIds:
        """The ids of a model whose language can be detected; English-only models have no language tokens."""
        ids = cls.from_generation_config(generation_config)
        if not ids.is_multilingual:
            raise ValueError("this is an English-only model: it has no language tokens to detect")
        return ids

    @property
    def no_speech_token_id(self) -> int:
        """``<|nocaptions|>`` / ``<|nospeech|>`` sits right before ``<|notimestamps|>``."""
        return self.no_timestamps_token_id - 1

    def language_token(self, language: str) -> int:
        """Token id of a language given as code, name, alias or ``<|xx|>`` token; clear error otherwise."""
        if not self.is_multilingual:
            raise ValueError("this is an English-only model: it takes no language (leave language=None)")
        token = f"<|{language_code(language)}|>"
        if token not in self.lang_to_id:
            raise ValueError(f"language {language!r} is not supported by this model ({len(self.lang_to_id)} languages)")
        return self.lang_to_id[token]

    def detected(self, probabilities: Any, return_probabilities: bool) -> Any:
        """What ``detect_language`` returns for ``probabilities [batch, languages]`` (over ``lang_to_id``):
        transformers' language token ids ``[batch]`` (int64), or per row ``{"en": 0.97, ...}``."""
        probabilities = np.asarray(probabilities)
        if return_probabilities:
            codes = [token[2:-2] for token in self.lang_to_id]
            return [dict(zip(codes, row.tolist(), strict=True)) for row in probabilities]
        return np.asarray(list(self.lang_to_id.values()), np.int64)[probabilities.argmax(axis=-1)]

    def language_of_token(self, token_id: int) -> str:
        """The language code of a language token id."""
        for token, candidate in self.lang_to_id.items():
            if candidate == token_id:
                return token[2:-2]
        raise ValueError(f"token {token_id} is not a language token")


def per_row(value: Any, batch_size: int, what: str, single: type | tuple[type, ...]) -> list[Any]:
    """One value per batch row: ``value`` for every row where it is one (``None`` or a ``single``), else a
    sequence of exactly one per row (``what`` names them in the error)."""
    if value is None or isinstance(value, single):
        return [value] * batch_size
    values = list(value)
    if len(values) != batch_size:
        raise ValueError(f"got {len(values)} {what} for a batch of {batch_size}")
    return values


def languages_per_row(language: str | Sequence[str | None] | None, batch_size: int) -> list[str | None]:
    """One language (or ``None`` = detect) per batch row."""
    return per_row(language, batch_size, "languages", str)


def decoder_prefix(
    ids: PrefixIds,
    language_token: int | None,
    task: str | None,
    return_timestamps: bool,
) -> list[int]:
    """``<|startoftranscript|> [<|lang|> <|task|>] [<|notimestamps|>]`` for one row.

    ``language_token`` is required for multilingual models (detect it first when not given).
    """
    prefix = [ids.decoder_start_token_id]
    if ids.is_multilingual:
        if language_token is None:
            raise ValueError("a multilingual model needs a language token: give language= or detect it first")
        prefix.append(language_token)
        task = check_task(task) if task is not None else TRANSCRIBE
        if task not in ids.task_to_id:
            raise ValueError(f"generation_config.task_to_id has no {task!r}")
        prefix.append(ids.task_to_id[task])
    elif task is not None:
        check_task(task)
        raise ValueError("this is an English-only model: it can only transcribe English (leave task=None)")
    if not return_timestamps:
        prefix.append(ids.no_timestamps_token_id)
    return prefix


def prompt_tokens(ids: PrefixIds, prompt_ids: Sequence[int] | None, max_target_positions: int) -> list[int]:
    """The ``<|startofprev|> ...`` prompt, cut to what openai-whisper keeps; empty when there is none."""
    if prompt_ids is None or len(prompt_ids) == 0:
        return []
    prompt = [int(token) for token in prompt_ids]
    if ids.prev_sot_token_id is not None and prompt[0] != ids.prev_sot_token_id:
        raise ValueError("prompt_ids must start with <|startofprev|>: make them with tokenizer.get_prompt_ids(text)")
    keep = max_target_positions // 2 - 1
    return [prompt[0], *prompt[1:][-keep:]] if len(prompt) - 1 > keep else prompt
