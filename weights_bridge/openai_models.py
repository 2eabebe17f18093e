"""What an openai-whisper ``.pt`` file does not store: its alignment heads and its tokenizer.

openai-whisper keeps both outside the checkpoint. The alignment heads (the cross-attention heads that
follow the audio, used for word timestamps) are a per-model table in its code, chosen by model name;
a file loaded by path gets its fallback, every head of the decoder's second half. The tokenizer is a
``.tiktoken`` file shipped in its wheel. This module recognises an official model by the name
openai-whisper downloads it under (``tiny.en.pt``, ``large-v3.pt``, …) and checks that the name agrees
with the dimensions, so a fine-tuned file renamed to an official name still only gets heads that fit.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from whisper_core.config import MULTILINGUAL_VOCAB_SIZE, WhisperConfig

# Decoder layer:head pairs of each official model, as openai-whisper's table and HF's hub generation
# configs give them. Keys are the file names' stems.
OFFICIAL_ALIGNMENT_HEADS: dict[str, str] = {
    "tiny.en": "1:0 2:0 2:5 3:0 3:1 3:2 3:3 3:4",
    "tiny": "2:2 3:0 3:2 3:3 3:4 3:5",
    "base.en": "3:3 4:7 5:1 5:5 5:7",
    "base": "3:1 4:2 4:3 4:7 5:1 5:2 5:4 5:6",
    "small.en": "6:6 7:0 7:3 7:8 8:2 8:5 8:7 9:0 9:4 9:8 9:10 10:0 10:1 10:2 10:3 10:6 10:11 11:2 11:4",
    "small": "5:3 5:9 8:0 8:4 8:7 8:8 9:0 9:7 9:9 10:5",
    "medium.en": "11:4 14:1 14:12 14:14 15:4 16:0 16:4 16:9 17:12 17:14 18:7 18:10 18:15 20:0 20:3 20:9 20:14 21:12",
    "medium": "13:15 15:4 15:15 16:1 20:0 23:4",
    "large-v1": "9:19 11:2 11:4 11:17 22:7 22:11 22:17 23:2 23:15",
    "large-v2": "10:12 13:17 16:11 16:12 16:13 17:15 17:16 18:4 18:11 18:19 19:11 21:2 21:3 22:3 22:9 22:12 23:5 23:7 23:13 25:5 26:1 26:12 27:15",
    "large-v3": "7:0 10:17 12:18 13:12 16:1 17:14 19:11 21:4 24:1 25:6",
    "large-v3-turbo": "2:4 2:11 3:3 3:6 3:11 3:14",
}
# openai-whisper's assets: the byte-pair ranks of its two vocabularies.
TIKTOKEN_FILES = {False: "gpt2.tiktoken", True: "multilingual.tiktoken"}


def _pairs(table_entry: str) -> list[tuple[int, int]]:
    return [(int(layer), int(head)) for layer, head in (pair.split(":") for pair in table_entry.split())]


def _matches(name: str, config: WhisperConfig) -> bool:
    """Whether an official model of this name could have ``config``: vocabulary kind and head grid."""
    english_only = name.endswith(".en")
    if english_only == (config.vocab_size >= MULTILINGUAL_VOCAB_SIZE):
        return False
    return all(
        layer < config.decoder_layers and head < config.decoder_attention_heads
        for layer, head in _pairs(OFFICIAL_ALIGNMENT_HEADS[name])
    )


def alignment_heads(config: WhisperConfig, file_name: str | None = None) -> list[list[int]]:
    """The alignment heads for a model without stored ones: the official table when ``file_name`` is an
    official model's and fits ``config``, otherwise openai-whisper's fallback (the decoder's second half)."""
    stem = Path(file_name).stem if file_name else None
    if stem in OFFICIAL_ALIGNMENT_HEADS and _matches(stem, config):
        return [list(pair) for pair in _pairs(OFFICIAL_ALIGNMENT_HEADS[stem])]
    return [
        [layer, head]
        for layer in range(config.decoder_layers // 2, config.decoder_layers)
        for head in range(config.decoder_attention_heads)
    ]


def bundled_tiktoken(config: WhisperConfig) -> Path | None:
    """openai-whisper's ``.tiktoken`` file for this model's vocabulary, if openai-whisper is installed.

    Found without importing openai-whisper (which would import torch and numba)."""
    spec = importlib.util.find_spec("whisper")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "assets" / TIKTOKEN_FILES[config.vocab_size >= MULTILINGUAL_VOCAB_SIZE]
        if path.is_file():
            return path
    return None
