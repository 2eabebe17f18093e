"""Which tokens Whisper never samples: the default ``suppress_tokens`` and ``begin_suppress_tokens``.

HF's ``generation_config.json`` stores openai-whisper's ``suppress_tokens="-1"`` already expanded:
the tokens that spell non-speech symbols (bracketed sound descriptions, music notes, markup), plus the
special tokens that may only appear in the prefix. A checkpoint that comes without a generation
config (an openai-whisper ``.pt`` file) gets the same lists from its tokenizer through this module, so
decoding it suppresses exactly what openai-whisper and transformers suppress.
"""

from __future__ import annotations

from typing import Protocol

# Symbols whose tokens are suppressed when the symbol is one token on its own or after a blank.
_SYMBOLS = (
    *'"#()*+/:;<=>@[\\]^_`{|}~「」『』',
    *("<<", ">>", "<<<", ">>>", "--", "---", "-(", "-[", "('", '("'),
    *("((", "))", "(((", ")))", "[[", "]]", "{{", "}}", "♪♪", "♪♪♪"),
)
# Music symbols are multi-byte: suppressing their first token (a partial UTF-8 sequence) is enough.
_MUSIC_SYMBOLS = tuple("♩♪♫♬♭♮♯")
# Starts of a word that are never speech on their own: a dash and a quote after a blank.
_WORD_STARTS = (" -", " '")
# Special tokens that belong in the decoder prefix only, never in the generated text.
PREFIX_ONLY_TOKENS = (
    "<|startoftranscript|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
)
NO_SPEECH_TOKENS = ("<|nocaptions|>", "<|nospeech|>")  # the name changed with large-v3


class Tokenizer(Protocol):
    """What this module needs of :class:`whisper_core.tokenizer.WhisperTokenizer`."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def get_vocab(self) -> dict[str, int]: ...

    @property
    def eos_token_id(self) -> int: ...


def non_speech_token_ids(tokenizer: Tokenizer) -> list[int]:
    """Tokens that spell non-speech annotations, which Whisper's training transcripts used for sounds."""
    ids = {tokenizer.encode(start, add_special_tokens=False)[0] for start in _WORD_STARTS}
    for symbol in _SYMBOLS + _MUSIC_SYMBOLS:
        for spelling in (symbol, " " + symbol):
            tokens = tokenizer.encode(spelling, add_special_tokens=False)
            if len(tokens) == 1 or symbol in _MUSIC_SYMBOLS:
                ids.add(tokens[0])
    return sorted(ids)


def default_suppress_tokens(tokenizer: Tokenizer) -> list[int]:
    """``suppress_tokens`` as HF's generation configs hold it: non-speech tokens, then prefix-only specials."""
    vocab = tokenizer.get_vocab()
    specials = [vocab[token] for token in PREFIX_ONLY_TOKENS + NO_SPEECH_TOKENS if token in vocab]
    return non_speech_token_ids(tokenizer) + sorted(specials)


def default_begin_suppress_tokens(tokenizer: Tokenizer) -> list[int]:
    """``begin_suppress_tokens``: a transcript never starts with a bare blank or ends before it starts."""
    return [tokenizer.encode(" ", add_special_tokens=False)[0], tokenizer.eos_token_id]
