"""``WhisperTokenizer``: Whisper's byte-level BPE with its special tokens, on the Rust ``tokenizers`` library.

Loads an HF ``tokenizer.json``, or ``vocab.json`` + ``merges.txt`` (+ ``added_tokens.json``,
``special_tokens_map.json``, ``tokenizer_config.json``, ``normalizer.json``), or OpenAI's
``.tiktoken`` files, and gives the token ids transformers 4.57 gives. The prefix tokens
(``<|startoftranscript|> <|lang|> <|task|> <|notimestamps|>``) are added here in Python, from
the language table in :mod:`whisper_core.languages`, rather than through the file's
post-processor, so they always follow ``language``/``task``/``predict_timestamps``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from .fileio import atomic_path, read_json, write_json
from .hub import resolve_file
from .languages import LANGUAGES, check_task, language_code
from .normalizers import BasicTextNormalizer, EnglishTextNormalizer
from .tensors import BatchFeature, check_return_tensors, convert

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
ADDED_TOKENS_FILE = "added_tokens.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
NORMALIZER_FILE = "normalizer.json"

START_OF_TRANSCRIPT = "<|startoftranscript|>"
END_OF_TEXT = "<|endoftext|>"
START_OF_PREV = "<|startofprev|>"
NO_TIMESTAMPS = "<|notimestamps|>"
TRANSCRIBE = "<|transcribe|>"
TRANSLATE = "<|translate|>"
TIME_PRECISION = 0.02  # seconds per timestamp token
SEGMENT_FRAMES = 1500  # encoder positions in one 30 s window


def _token_ids_list(token_ids: Any) -> list[int]:
    """Accept ints, lists, NumPy arrays and framework tensors (anything with ``.numpy()`` or ``__array__``)."""
    if isinstance(token_ids, int | np.integer):
        return [int(token_ids)]
    if hasattr(token_ids, "detach"):  # torch
        token_ids = token_ids.detach().cpu()
    if hasattr(token_ids, "numpy") and not isinstance(token_ids, np.ndarray):  # torch, TF
        token_ids = token_ids.numpy()
    return [int(token) for token in np.asarray(token_ids).reshape(-1)]


class WhisperTokenizer:
    """Whisper tokenizer with the transformers 4.57 ``WhisperTokenizer(Fast)`` interface."""

    model_input_names = ("input_ids", "attention_mask")

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        language: str | None = None,
        task: str | None = None,
        predict_timestamps: bool = False,
        english_spelling_normalizer: dict[str, str] | None = None,
        clean_up_tokenization_spaces: bool = False,
        model_max_length: int = 1024,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self._tokenizer = tokenizer
        # every token is added before this wrapper exists, and asking the Rust side costs ~15 ms a call
        # (decode needs it every time: word timing decodes token by token)
        self._size = tokenizer.get_vocab_size(with_added_tokens=True)
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        for token in (START_OF_TRANSCRIPT, END_OF_TEXT, NO_TIMESTAMPS):
            if tokenizer.token_to_id(token) is None:
                raise ValueError(f"this vocabulary has no {token} token: it is not a Whisper tokenizer")
        self.english_spelling_normalizer = english_spelling_normalizer
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.model_max_length = model_max_length
        self.extra_config = dict(extra_config or {})
        self.language: str | None = None
        self.task: str | None = None
        self.predict_timestamps = predict_timestamps
        self.set_prefix_tokens(language=language, task=task)

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> WhisperTokenizer:
        """Load from a checkpoint directory (or hub id) holding tokenizer.json or vocab.json + merges.txt,
        or from a ``.tiktoken`` file (keywords ``num_languages``: 99, or 100 for large-v3; ``with_timestamps``)."""
        path = Path(name_or_path)
        if path.suffix == ".tiktoken":
            from .tiktoken_conversion import tokenizer_from_tiktoken

            if not path.is_file():
                raise FileNotFoundError(f"no such tiktoken file: {path}")
            # Timestamps stay out of the vocabulary, as in the HF files of the same models.
            converted = tokenizer_from_tiktoken(
                path,
                num_languages=kwargs.pop("num_languages", 99),
                with_timestamps=kwargs.pop("with_timestamps", False),
            )
            return cls(converted, **kwargs)
        config_path = resolve_file(name_or_path, TOKENIZER_CONFIG_FILE, required=False)
        config = read_json(config_path) if config_path else {}
        normalizer_path = resolve_file(name_or_path, NORMALIZER_FILE, required=False)
        tokenizer_path = resolve_file(name_or_path, TOKENIZER_FILE, required=False)
        if tokenizer_path is not None:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        else:
            vocab_path = resolve_file(name_or_path, VOCAB_FILE, required=False)
            merges_path = resolve_file(name_or_path, MERGES_FILE, required=False)
            if vocab_path is None or merges_path is None:
                raise FileNotFoundError(
                    f"{name_or_path} holds no Whisper tokenizer: expected {TOKENIZER_FILE}, or {VOCAB_FILE} and "
                    f"{MERGES_FILE}, or pass a .tiktoken file"
                )
            added_path = resolve_file(name_or_path, ADDED_TOKENS_FILE, required=False)
            special_path = resolve_file(name_or_path, SPECIAL_TOKENS_MAP_FILE, required=False)
            tokenizer = _tokenizer_from_vocab_files(
                vocab_path,
                merges_path,
                read_json(added_path) if added_path else {},
                read_json(special_path) if special_path else {},
                config.get("added_tokens_decoder", {}),
            )
        options = {
            "language": config.get("language"),
            "task": config.get("task"),
            "predict_timestamps": config.get("predict_timestamps", False),
            "clean_up_tokenization_spaces": config.get("clean_up_tokenization_spaces", False),
            "model_max_length": int(min(config.get("model_max_length", 1024), 1 << 31)),
            "english_spelling_normalizer": read_json(normalizer_path) if normalizer_path else None,
            "extra_config": {k: v for k, v in config.items() if k not in _CONFIG_KEYS_WE_WRITE},
        }
        options.update(kwargs)
        return cls(tokenizer, **options)

    def save_pretrained(self, directory: str | os.PathLike) -> tuple[Path, ...]:
        """Write tokenizer.json, vocab.json, merges.txt, added_tokens.json, special_tokens_map.json,
        tokenizer_config.json and (when known) normalizer.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tokenizer_path = directory / TOKENIZER_FILE
        with atomic_path(tokenizer_path) as temp_path:
            self._tokenizer.save(str(temp_path))
        added = {
            token.content: token_id for token_id, token in sorted(self._tokenizer.get_added_tokens_decoder().items())
        }
        write_json(directory / ADDED_TOKENS_FILE, added)
        special = {
            "bos_token": END_OF_TEXT,
            "eos_token": END_OF_TEXT,
            "unk_token": END_OF_TEXT,
            "pad_token": END_OF_TEXT,
            "additional_special_tokens": [t for t in self.all_special_tokens if t != END_OF_TEXT],
        }
        write_json(directory / SPECIAL_TOKENS_MAP_FILE, special)
        config = {
            **self.extra_config,
            "tokenizer_class": "WhisperTokenizer",
            "language": self.language,
            "task": self.task,
            "predict_timestamps": self.predict_timestamps,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "model_max_length": self.model_max_length,
            "bos_token": END_OF_TEXT,
            "eos_token": END_OF_TEXT,
            "unk_token": END_OF_TEXT,
            "pad_token": END_OF_TEXT,
            "errors": "replace",
            "add_prefix_space": False,
        }
        write_json(directory / TOKENIZER_CONFIG_FILE, config)
        return (tokenizer_path, *self.save_vocabulary(directory), directory / TOKENIZER_CONFIG_FILE)

    def save_vocabulary(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None
    ) -> tuple[Path, ...]:
        """Write vocab.json and merges.txt (and normalizer.json when this tokenizer has a spelling map)."""
        save_directory = Path(save_directory)
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        files = tuple(Path(name) for name in self._tokenizer.model.save(str(save_directory), filename_prefix))
        if self.english_spelling_normalizer is not None:
            normalizer_path = save_directory / f"{prefix}{NORMALIZER_FILE}"
            write_json(normalizer_path, self.english_spelling_normalizer)
            files += (normalizer_path,)
        return files

    # -- vocabulary ------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Size of the BPE vocabulary without the added (special and timestamp) tokens."""
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._size

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def backend_tokenizer(self) -> Tokenizer:
        return self._tokenizer

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        if isinstance(tokens, str):
            token_id = self._tokenizer.token_to_id(tokens)
            if token_id is None:
                raise KeyError(f"token {tokens!r} is not in the vocabulary")
            return token_id
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Iterable[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, int | np.integer):
            return self._tokenizer.id_to_token(int(ids))
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(i) for i in _token_ids_list(ids) if i not in special]

    @property
    def all_special_tokens(self) -> list[str]:
        """Special tokens in id order: ``<|endoftext|>`` through ``<|notimestamps|>``."""
        decoder = self._tokenizer.get_added_tokens_decoder()
        return [token.content for _, token in sorted(decoder.items()) if token.special]

    @property
    def all_special_ids(self) -> list[int]:
        decoder = self._tokenizer.get_added_tokens_decoder()
        return [token_id for token_id, token in sorted(decoder.items()) if token.special]

    eos_token = bos_token = unk_token = pad_token = END_OF_TEXT

    @property
    def eos_token_id(self) -> int:
        return self.convert_tokens_to_ids(END_OF_TEXT)

    bos_token_id = unk_token_id = pad_token_id = eos_token_id

    @property
    def timestamp_begin(self) -> int:
        """Id of ``<|0.00|>``: timestamps follow ``<|notimestamps|>`` in every Whisper vocabulary."""
        return self.convert_tokens_to_ids(NO_TIMESTAMPS) + 1

    def timestamp_ids(self, time_precision: float = TIME_PRECISION) -> list[int]:
        """Ids of ``<|0.00|>`` .. ``<|30.00|>`` (whether or not the file lists them as tokens)."""
        return [self.timestamp_begin + i for i in range(SEGMENT_FRAMES + 1)]

    # -- prefix tokens ---------------------------------------------------------------------
    def set_prefix_tokens(
        self, language: str | None = None, task: str | None = None, predict_timestamps: bool | None = None
    ) -> None:
        """Change the language, task or timestamp mode of the prefix; ``None`` keeps the current one."""
        # Everything is checked before anything changes, so a rejected call leaves the tokenizer as it was.
        code = language_code(language) if language is not None else None
        if code is not None and self._tokenizer.token_to_id(f"<|{code}|>") is None:
            raise ValueError(f"language {language!r} (<|{code}|>) is not in this tokenizer's vocabulary")
        checked_task = check_task(task) if task is not None else None
        if code is not None:
            self.language = code
        if checked_task is not None:
            self.task = checked_task
        if predict_timestamps is not None:
            self.predict_timestamps = predict_timestamps

    @property
    def prefix_tokens(self) -> list[int]:
        """``<|startoftranscript|>`` then the language, task and ``<|notimestamps|>`` tokens that apply."""
        prefix = [self.convert_tokens_to_ids(START_OF_TRANSCRIPT)]
        if self.language is not None:
            prefix.append(self.convert_tokens_to_ids(f"<|{self.language}|>"))
        if self.task is not None:
            prefix.append(self.convert_tokens_to_ids(TRANSCRIBE if self.task == "transcribe" else TRANSLATE))
        if not self.predict_timestamps:
            prefix.append(self.convert_tokens_to_ids(NO_TIMESTAMPS))
        return prefix

    def get_decoder_prompt_ids(
        self, task: str | None = None, language: str | None = None, no_timestamps: bool = True
    ) -> list[tuple[int, int]]:
        """Forced ``(position, token)`` pairs after ``<|startoftranscript|>``, as transformers returns them."""
        self.set_prefix_tokens(task=task, language=language, predict_timestamps=not no_timestamps)
        return [(position + 1, token) for position, token in enumerate(self.prefix_tokens[1:])]

    def language_token_ids(self) -> dict[str, int]:
        """Language code -> token id, for every language this vocabulary has a token for."""
        vocab = self._tokenizer
        return {
            code: vocab.token_to_id(f"<|{code}|>") for code in LANGUAGES if vocab.token_to_id(f"<|{code}|>") is not None
        }

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """Prefix tokens, the text, then ``<|endoftext|>``."""
        return self.prefix_tokens + list(token_ids_0) + list(token_ids_1 or []) + [self.eos_token_id]

    def get_special_tokens_mask(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        if already_has_special_tokens:
            special = set(self.all_special_ids)
            return [int(token in special) for token in [*token_ids_0, *(token_ids_1 or [])]]
        body = len(token_ids_0) + len(token_ids_1 or [])
        return [1] * len(self.prefix_tokens) + [0] * body + [1]

    def create_token_type_ids_from_sequences(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """Whisper has no token types: zeros over the first sequence, ones over the optional second."""
        return [0] * len(token_ids_0) + [1] * len(token_ids_1 or [])

    # -- encoding --------------------------------------------------------------------------
    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        add_special_tokens: bool = True,
        truncation: bool = False,
        max_length: int | None = None,
    ) -> list[int]:
        """Token ids of ``text`` (and ``text_pair``); truncation shortens the text, never the special tokens."""
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids
        pair = self._tokenizer.encode(text_pair, add_special_tokens=False).ids if text_pair is not None else []
        if truncation:
            budget = (max_length or self.model_max_length) - (len(self.prefix_tokens) + 1 if add_special_tokens else 0)
            ids, pair = _truncate_longest_first(ids, pair, max(budget, 0))
        if add_special_tokens:
            return self.build_inputs_with_special_tokens(ids, pair)
        return ids + pair

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
        **kwargs: Any,
    ) -> BatchFeature:
        """Tokenise one text or a batch: ``input_ids`` and ``attention_mask`` (padded with ``<|endoftext|>``)."""
        check_return_tensors(return_tensors)
        if unknown := set(kwargs) - {"verbose", "return_token_type_ids"}:
            raise TypeError(f"unexpected arguments: {sorted(unknown)}")
        batched = not isinstance(text, str)
        texts = list(text) if batched else [text]
        pairs = (list(text_pair) if batched else [text_pair]) if text_pair is not None else [None] * len(texts)
        rows = [
            self.encode(t, p, add_special_tokens=add_special_tokens, truncation=truncation, max_length=max_length)
            for t, p in zip(texts, pairs, strict=True)
        ]
        padding = {True: "longest", False: "do_not_pad"}.get(padding, padding)
        width = {"longest": max(map(len, rows), default=0), "max_length": max_length, "do_not_pad": None}[padding]
        if padding == "max_length" and width is None:
            raise ValueError("padding='max_length' needs max_length")
        masks = [[1] * len(row) for row in rows]
        if width is not None:
            masks = [mask + [0] * (width - len(mask)) for mask in masks]
            rows = [row + [self.pad_token_id] * (width - len(row)) for row in rows]
        result = BatchFeature(input_ids=rows if batched else rows[0])
        if return_attention_mask:
            result["attention_mask"] = masks if batched else masks[0]
        if return_tensors is not None:
            if len({len(row) for row in rows}) > 1:
                raise ValueError("texts of different lengths: pass padding=True to return tensors")
            for key in list(result):
                result[key] = np.asarray(result[key], dtype=np.int64)
            result.convert_to_tensors(return_tensors)
        return result

    def get_prompt_ids(self, text: str, return_tensors: str | None = "np") -> Any:
        """``<|startofprev|>`` + the text, for ``generate(prompt_ids=...)``; special tokens in the text are refused."""
        ids = self._tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids
        special = set(self.all_special_ids)
        for token in ids:
            if token in special:
                raise ValueError(f"the prompt contains the special token {self.convert_ids_to_tokens(token)}")
        prompt = [self.convert_tokens_to_ids(START_OF_PREV), *ids]
        if return_tensors is None:
            return prompt
        return convert(np.asarray(prompt, dtype=np.int64), return_tensors)

    # -- decoding --------------------------------------------------------------------------
    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        output_offsets: bool = False,
        time_precision: float = TIME_PRECISION,
        decode_with_timestamps: bool = False,
        normalize: bool = False,
        basic_normalize: bool = False,
        remove_diacritics: bool = False,
        **kwargs: Any,
    ) -> str | dict[str, Any]:
        """Ids -> text. Timestamp tokens are dropped unless ``decode_with_timestamps``; with
        ``skip_special_tokens`` a ``<|startofprev|>`` prompt is removed too."""
        ids = _token_ids_list(token_ids)
        kept = self._strip_prompt(ids) if skip_special_tokens else ids
        if decode_with_timestamps:
            text = self._decode_with_timestamps(kept, skip_special_tokens, time_precision)
        else:
            text = self._decode_text(kept, skip_special_tokens, clean_up_tokenization_spaces)
            text = self._normalized(text, normalize, basic_normalize, remove_diacritics)
        if output_offsets:
            return {"text": text, "offsets": self._compute_offsets(ids, time_precision)}
        return text

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        if hasattr(sequences, "sequences"):
            sequences = sequences.sequences
        if hasattr(sequences, "numpy") or isinstance(sequences, np.ndarray):
            sequences = np.asarray(sequences.detach().cpu() if hasattr(sequences, "detach") else sequences)
        return [self.decode(row, **kwargs) for row in sequences]

    def normalize(self, text: str) -> str:
        """Whisper's English normaliser (numbers, spellings, punctuation), for WER."""
        return EnglishTextNormalizer(self.english_spelling_normalizer)(text)

    @staticmethod
    def basic_normalize(text: str, remove_diacritics: bool = False) -> str:
        """Whisper's language-neutral normaliser, for multilingual WER."""
        return BasicTextNormalizer(remove_diacritics=remove_diacritics)(text)

    def _normalized(self, text: str, normalize: bool, basic_normalize: bool, remove_diacritics: bool) -> str:
        if normalize:
            return self.normalize(text)
        if basic_normalize:
            return self.basic_normalize(text, remove_diacritics=remove_diacritics)
        return text

    def _decode_text(self, ids: list[int], skip_special_tokens: bool, clean_up: bool | None = None) -> str:
        in_vocab = len(self)
        text = self._tokenizer.decode([i for i in ids if i < in_vocab], skip_special_tokens=skip_special_tokens)
        text = _TIMESTAMP_TEXT.sub("", text)
        if self.clean_up_tokenization_spaces if clean_up is None else clean_up:
            text = _clean_up_spaces(text)
        return text

    def _strip_prompt(self, ids: list[int]) -> list[int]:
        """Drop a leading ``<|startofprev|> ...`` prompt up to ``<|startoftranscript|>`` (all of it if none follows)."""
        if not ids or ids[0] != self.convert_tokens_to_ids(START_OF_PREV):
            return ids
        start = self.convert_tokens_to_ids(START_OF_TRANSCRIPT)
        return ids[ids.index(start) :] if start in ids else []

    def _decode_with_timestamps(self, ids: list[int], skip_special_tokens: bool, time_precision: float) -> str:
        """Text with ``<|t|>`` markers; times keep counting across 30 s windows.

        A timestamp smaller than the previous one starts a new window. If the window before
        ended on a lone timestamp, the whole window (30 s) is added to the offset; if it ended
        on a pair, the pair's first time is where the next window started, and the unfinished
        pair is dropped.
        """
        begin = self.timestamp_begin
        pieces: list[str | list[int]] = [[]]
        latest = penultimate = offset = 0.0
        for position, token in enumerate(ids):
            if token < begin:
                pieces[-1].append(token)
                continue
            time = (token - begin) * time_precision
            if time < latest:
                ended_on_pair = position >= 2 and ids[position - 1] >= begin and ids[position - 2] >= begin
                if ended_on_pair:
                    latest = penultimate
                    offset += penultimate
                    pieces = pieces[:-2]
                else:
                    offset += time_precision * SEGMENT_FRAMES
            penultimate, latest = latest, time
            pieces.extend([f"<|{time + offset:.2f}|>", []])
        return "".join(
            piece if isinstance(piece, str) else self._decode_text(piece, skip_special_tokens) for piece in pieces
        )

    def _compute_offsets(self, ids: list[int], time_precision: float = TIME_PRECISION) -> list[dict[str, Any]]:
        """Segments ``{"text", "timestamp": (start, end)}`` between consecutive timestamp pairs."""
        begin = self.timestamp_begin
        tokens = np.asarray(ids)
        is_time = tokens >= begin
        boundaries = list(np.flatnonzero(is_time[:-1] & is_time[1:]) + 1)  # second token of each pair
        time_positions = np.flatnonzero(is_time)
        if not boundaries and len(time_positions) <= 1:
            return []
        if time_positions[-1] + 1 not in boundaries:
            boundaries.append(time_positions[-1] + 1)
        offsets = []
        start = time_positions[0]
        latest = window_offset = 0
        for stop in boundaries:
            piece = ids[start:stop]
            if len(piece) > 1:
                first, last = piece[0] - begin, piece[-1] - begin
                if first < latest:  # a new 30 s window began
                    single_ending = start >= 2 and not (ids[start - 2] >= begin and ids[start - 1] >= begin)
                    window_offset += SEGMENT_FRAMES if single_ending else latest
                latest = last
                text = self._decode_text([t for t in piece if t < begin], skip_special_tokens=False)
                offsets.append(
                    {
                        "text": text,
                        "timestamp": (
                            first * time_precision + window_offset * time_precision,
                            last * time_precision + window_offset * time_precision,
                        ),
                    }
                )
            start = stop
        return offsets

    def __repr__(self) -> str:
        return (
            f"WhisperTokenizer(vocab={len(self)}, language={self.language!r}, task={self.task!r}, "
            f"predict_timestamps={self.predict_timestamps})"
        )


WhisperTokenizerFast = WhisperTokenizer

_CONFIG_KEYS_WE_WRITE = {
    "tokenizer_class",
    "language",
    "task",
    "predict_timestamps",
    "clean_up_tokenization_spaces",
    "model_max_length",
    "bos_token",
    "eos_token",
    "unk_token",
    "pad_token",
    "errors",
    "add_prefix_space",
    "added_tokens_decoder",
}


def _tokenizer_from_vocab_files(
    vocab_path: Path,
    merges_path: Path,
    added_tokens: dict[str, int],
    special_tokens_map: dict[str, Any],
    added_tokens_decoder: dict[str, dict[str, Any]],
) -> Tokenizer:
    """Build the byte-level BPE of the slow-tokenizer files and add the special and timestamp tokens."""
    vocab = read_json(vocab_path)
    merges = []
    for line in merges_path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#version"):
            parts = line.split(" ")
            if len(parts) != 2:
                raise ValueError(f"{merges_path}: malformed merge line {line!r}")
            merges.append((parts[0], parts[1]))
    tokenizer = Tokenizer(models.BPE(vocab, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special_names = set(special_tokens_map.get("additional_special_tokens", []))
    special_names.update(v for k, v in special_tokens_map.items() if k.endswith("_token") and isinstance(v, str))
    special_names = {name["content"] if isinstance(name, dict) else name for name in special_names}
    entries = {
        int(token_id): (info["content"], bool(info.get("special"))) for token_id, info in added_tokens_decoder.items()
    }
    for content, token_id in added_tokens.items():
        entries.setdefault(int(token_id), (content, content in special_names))
    for token_id, (content, special) in sorted(entries.items()):
        if token_id < len(vocab) and not special:
            continue  # an ordinary BPE token
        added = AddedToken(content, special=special, normalized=False)
        tokenizer.add_special_tokens([added]) if special else tokenizer.add_tokens([added])
        if tokenizer.token_to_id(content) != token_id:
            raise ValueError(
                f"added token {content!r} should have id {token_id}: the added-token ids are not contiguous"
            )
    return tokenizer


def _truncate_longest_first(ids: list[int], pair: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Drop tokens from the end of the longer sequence until both fit in ``budget`` (transformers' default)."""
    excess = len(ids) + len(pair) - budget
    if excess <= 0:
        return ids, pair
    shorter = min(len(ids), len(pair))
    # The longer one shrinks to the shorter's length first, then both lose tokens alternately.
    from_longer = min(excess, max(len(ids), len(pair)) - shorter)
    rest = excess - from_longer
    keep_ids = len(ids) - (from_longer if len(ids) > len(pair) else 0) - rest // 2
    keep_pair = len(pair) - (from_longer if len(ids) <= len(pair) else 0) - (rest + 1) // 2
    return ids[: max(keep_ids, 0)], pair[: max(keep_pair, 0)]


def _clean_up_spaces(text: str) -> str:
    """transformers' ``clean_up_tokenization``: remove spaces before punctuation and English contractions."""
    for before, after in _CLEAN_UPS:
        text = text.replace(before, after)
    return text


_CLEAN_UPS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)

_TIMESTAMP_TEXT = re.compile(r"<\|(\d+\.\d+)\|>")
