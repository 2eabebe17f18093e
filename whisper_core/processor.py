"""``WhisperProcessor``: the feature extractor and the tokenizer behind one object, as in transformers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .feature_extraction import WhisperFeatureExtractor
from .tensors import BatchFeature
from .tokenizer import WhisperTokenizer


class WhisperProcessor:
    """Audio -> ``input_features`` and text -> ``labels`` in one call; ``decode`` goes back to text."""

    def __init__(self, feature_extractor: WhisperFeatureExtractor, tokenizer: WhisperTokenizer) -> None:
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **tokenizer_kwargs: Any) -> WhisperProcessor:
        """Read preprocessor_config.json and the tokenizer files of a checkpoint directory or hub id.

        Unlike transformers, a checkpoint without preprocessor_config.json (``model.save_pretrained``
        plus ``tokenizer.save_pretrained``) loads too, with the extractor its config's ``num_mel_bins``
        implies and a warning (see ``WhisperFeatureExtractor.for_checkpoint``).
        """
        return cls(
            WhisperFeatureExtractor.for_checkpoint(name_or_path),
            WhisperTokenizer.from_pretrained(name_or_path, **tokenizer_kwargs),
        )

    def save_pretrained(self, directory: str | os.PathLike) -> list[Path]:
        return [self.feature_extractor.save_pretrained(directory), *self.tokenizer.save_pretrained(directory)]

    def __call__(
        self,
        audio: Any = None,
        text: str | list[str] | None = None,
        sampling_rate: int | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """``audio`` gives ``input_features`` (feature extractor keywords apply); ``text`` gives ``labels``
        (the token ids with prefix and ``<|endoftext|>``), or ``input_ids`` when there is no audio."""
        if audio is None and text is None:
            raise ValueError("give audio, text, or both")
        if audio is None:
            return self.tokenizer(text, return_tensors=return_tensors, **kwargs)
        result = self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors=return_tensors, **kwargs)
        if text is not None:
            encoding = self.tokenizer(text, return_tensors=return_tensors, padding=isinstance(text, list))
            result["labels"] = encoding["input_ids"]
        return result

    def decode(self, *args: Any, **kwargs: Any) -> str | dict[str, Any]:
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def get_decoder_prompt_ids(
        self, task: str | None = None, language: str | None = None, no_timestamps: bool = True
    ) -> list[tuple[int, int]]:
        return self.tokenizer.get_decoder_prompt_ids(task=task, language=language, no_timestamps=no_timestamps)

    def get_prompt_ids(self, text: str, return_tensors: str | None = "np") -> Any:
        return self.tokenizer.get_prompt_ids(text, return_tensors=return_tensors)

    def __repr__(self) -> str:
        return f"WhisperProcessor({self.feature_extractor!r}, {self.tokenizer!r})"
