"""Turn OpenAI's ``.tiktoken`` rank files into a Hugging Face ``tokenizers.Tokenizer``.

OpenAI ships Whisper's vocabulary as ``gpt2.tiktoken`` (English-only models) and
``multilingual.tiktoken``: one ``base64(token_bytes) rank`` line per token and nothing else. A
tiktoken encoder needs no merge list, because byte-pair encoding by rank is the whole algorithm;
the Rust ``tokenizers`` BPE model, which the rest of this project uses, needs explicit merges and
tokens spelled in GPT-2's byte-to-unicode alphabet. This module recovers both from the ranks and
adds Whisper's special and timestamp tokens, giving the same vocabulary, ids, pre-tokenizer,
decoder and post-processor as the ``tokenizer.json`` files published on the Hugging Face hub, so a
checkpoint that only has the OpenAI assets still gets a tokenizer identical to the HF one.

One deliberate difference: the hub's multilingual ``tokenizer.json`` files (whisper-tiny, -base,
...) lack the very first merge, ``Ġ t``, most likely because their ``merges.txt`` was written without
the ``#version`` header and the loader skipped its first line as one. With that merge missing,
``" the"`` encodes as ``Ġ`` + ``the`` instead of the single token ``Ġthe`` that OpenAI's tokenizer
(and so the model's training data) uses. The conversion here keeps every merge and so follows
OpenAI's tokenization.

Importing this module needs only ``tokenizers``: no torch, TensorFlow, JAX or transformers.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from .config import MULTILINGUAL_VOCAB_SIZE
from .languages import LANGUAGES

__all__ = ["load_tiktoken_ranks", "special_token_ids", "token_bytes", "tokenizer_from_ranks", "tokenizer_from_tiktoken"]

# large-v3 added Cantonese as the 100th language; HF converted it with its tiktoken converter,
# which spells the no-speech token the way OpenAI does, while the older hub files say
# ``<|nocaptions|>``.
_LARGE_V3_NUM_LANGUAGES = 100

# Whisper's timestamps run from 0.00 to 30.00 seconds in steps of 0.02 s: 1501 tokens.
_TIMESTAMP_STEP_CENTISECONDS = 2
_TIMESTAMP_COUNT = 1501
# BPE ranks before <|endoftext|>: GPT-2's for English-only models, one more in the multilingual file.
_ENGLISH_RANKS, _MULTILINGUAL_RANKS = 50256, 50257


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE.

    Bytes that are already visible, non-space Latin-1 characters stand for themselves; every
    other byte (controls, space, DEL, NBSP, soft hyphen, ...) is given the next unused code
    point from U+0100 on, in byte order. Tokens in ``tokenizer.json`` are spelled this way, so
    that a token never contains whitespace and every byte string has a printable spelling.
    """
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in visible}
    next_code_point = 256
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(next_code_point)
            next_code_point += 1
    return table


_BYTE_TO_UNICODE = _byte_to_unicode()


def _spell(token: bytes) -> str:
    """The token's spelling in the byte-level alphabet."""
    return "".join(_BYTE_TO_UNICODE[byte] for byte in token)


_UNICODE_TO_BYTE = {character: byte for byte, character in _BYTE_TO_UNICODE.items()}


def token_bytes(spelling: str) -> bytes:
    """The bytes a byte-level BPE token stands for (the inverse of its ``tokenizer.json`` spelling), as
    runtimes that store raw byte vocabularies (whisper.cpp) want them."""
    try:
        return bytes(_UNICODE_TO_BYTE[character] for character in spelling)
    except KeyError as error:
        raise ValueError(f"token {spelling!r} is not spelled in the byte-level alphabet ({error})") from None


def _decode_token(field: bytes) -> bytes:
    """Decode one base64 token field, accepting OpenAI's spelling of the empty token.

    ``multilingual.tiktoken`` writes its empty token (rank 50256) as a lone ``=``, which a
    strict decoder rejects as "leading padding"; a lenient one would also silently drop stray
    characters. So the padding is normalised first and the rest decoded strictly.
    """
    body = field.rstrip(b"=")
    if len(field) - len(body) > 2:
        raise binascii.Error("too much padding")
    return base64.b64decode(body + b"=" * (-len(body) % 4), validate=True)


def load_tiktoken_ranks(path: str | os.PathLike[str]) -> dict[bytes, int]:
    """Read a ``.tiktoken`` file into ``{token_bytes: rank}``.

    The ranks become token ids, so they must be unique and run from 0 without gaps; anything
    else would shift the ids of every special token after them. Blank lines are ignored, as
    tiktoken does.

    Raises:
        ValueError: naming the file (and line, where there is one) when a line is not
            ``base64 rank``, the base64 or the rank is invalid, a token or rank repeats, a rank
            is missing, or the file holds no tokens.
    """
    path = Path(path)
    ranks: dict[bytes, int] = {}
    line_of_rank: dict[int, int] = {}
    for line_number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}, line {line_number}"
        if len(fields) != 2:
            raise ValueError(f"{where}: expected 'base64_token rank', got {line.strip()!r}")
        token_field, rank_field = fields
        try:
            token = _decode_token(token_field)
        except binascii.Error as error:
            raise ValueError(f"{where}: invalid base64 token {token_field!r} ({error})") from None
        if not (rank_field.isascii() and rank_field.isdigit()):
            raise ValueError(f"{where}: rank must be a non-negative integer, got {rank_field!r}")
        rank = int(rank_field)
        if rank in line_of_rank:
            raise ValueError(f"{where}: duplicate rank {rank} (first on line {line_of_rank[rank]})")
        if token in ranks:
            raise ValueError(f"{where}: duplicate token {token!r} (first with rank {ranks[token]})")
        ranks[token] = rank
        line_of_rank[rank] = line_number
    if not ranks:
        raise ValueError(f"{path}: no tokens (empty .tiktoken file)")
    if len(ranks) - 1 != max(line_of_rank):
        missing = min(set(range(len(ranks))) - line_of_rank.keys())
        raise ValueError(f"{path}: rank {missing} is missing; ranks must run from 0 to {len(ranks) - 1} without gaps")
    return ranks


def _recover_merges(ranks: dict[bytes, int], path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """The merge list, in rank order, that reproduces tiktoken's rank-based BPE.

    A multi-byte token of rank ``r`` is created by exactly one merge: BPE over its bytes that
    may only use tokens ranked below ``r`` ends with two parts, and joining those two is that
    merge, with priority ``r``. Single bytes are the base alphabet and the empty token (which
    ``multilingual.tiktoken`` has) is never produced by a merge, so neither gets one.
    """
    merges: list[tuple[str, str]] = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        # Two parts can only join into the token itself, which is not below its own rank.
        while len(parts) > 2:
            best_rank, best_index = rank, -1
            for index in range(len(parts) - 1):
                pair_rank = ranks.get(parts[index] + parts[index + 1], rank)
                if pair_rank < best_rank:
                    best_rank, best_index = pair_rank, index
            if best_index < 0:
                break
            parts[best_index : best_index + 2] = [parts[best_index] + parts[best_index + 1]]
        if len(parts) != 2:
            raise ValueError(f"{path}: token {token!r} (rank {rank}) cannot be built by merging lower-ranked tokens")
        merges.append((_spell(parts[0]), _spell(parts[1])))
    return merges


def _timestamp_tokens() -> list[str]:
    """``<|0.00|>`` ... ``<|30.00|>`` in 0.02 s steps, formatted without float rounding."""
    centiseconds = (step * _TIMESTAMP_STEP_CENTISECONDS for step in range(_TIMESTAMP_COUNT))
    return [f"<|{value // 100}.{value % 100:02d}|>" for value in centiseconds]


def _special_tokens(num_languages: int) -> list[str]:
    """Whisper's special tokens in id order, as openai-whisper appends them after the BPE ranks."""
    no_speech = "<|nospeech|>" if num_languages >= _LARGE_V3_NUM_LANGUAGES else "<|nocaptions|>"
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in list(LANGUAGES)[:num_languages]),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        no_speech,
        "<|notimestamps|>",
    ]


def special_token_ids(vocab_size: int) -> dict[str, int]:
    """Id of every special token of a Whisper vocabulary of ``vocab_size``, from openai-whisper's layout
    alone (BPE ranks, specials, 1501 timestamps), for checkpoints that come without tokenizer files."""
    ranks = _MULTILINGUAL_RANKS if vocab_size >= MULTILINGUAL_VOCAB_SIZE else _ENGLISH_RANKS
    num_languages = vocab_size - ranks - len(_special_tokens(0)) - _TIMESTAMP_COUNT
    if not 1 <= num_languages <= len(LANGUAGES):
        raise ValueError(f"vocab_size {vocab_size} is not a Whisper vocabulary ({num_languages} languages)")
    return {token: ranks + index for index, token in enumerate(_special_tokens(num_languages))}


def tokenizer_from_tiktoken(
    path: str | os.PathLike[str], num_languages: int = 99, with_timestamps: bool = True
) -> Tokenizer:
    """Build the HF-equivalent Whisper tokenizer from a ``.tiktoken`` file.

    Args:
        path: ``gpt2.tiktoken`` or ``multilingual.tiktoken`` (or a file in the same format).
        num_languages: how many ``<|xx|>`` language tokens follow ``<|startoftranscript|>``,
            in ``LANGUAGES`` order: 99 for English-only and v1/v2 multilingual models, 100 for
            large-v3, whose no-speech token is then named ``<|nospeech|>`` as in its HF files
            (older HF files call it ``<|nocaptions|>``).
        with_timestamps: also add the 1501 timestamp tokens ``<|0.00|>``..``<|30.00|>`` as
            non-special added tokens, as recent HF files do (older ones stop at
            ``<|notimestamps|>``).

    The ids are the ranks, then ``<|endoftext|>`` at ``len(ranks)`` and the other tokens
    consecutively after it. ``<|endoftext|>`` is also part of the BPE vocabulary, as in the HF
    files. Encoding with special tokens wraps the text as
    ``<|startoftranscript|><|notimestamps|> ... <|endoftext|>``, the HF files' default template.

    Raises:
        ValueError: the file is malformed (see ``load_tiktoken_ranks``), lacks one of the 256
            single-byte tokens, has a token that BPE cannot build, or ``num_languages`` is not
            between 1 and ``len(LANGUAGES)``.
    """
    path = Path(path)
    return tokenizer_from_ranks(load_tiktoken_ranks(path), path, num_languages, with_timestamps)


def tokenizer_from_ranks(
    ranks: dict[bytes, int], source: str | os.PathLike[str], num_languages: int = 99, with_timestamps: bool = True
) -> Tokenizer:
    """:func:`tokenizer_from_tiktoken` for ranks read from elsewhere (a whisper.cpp file's vocabulary);
    ``source`` names where they came from in errors. The ranks must run from 0 without gaps."""
    if not 1 <= num_languages <= len(LANGUAGES):
        raise ValueError(f"num_languages must be between 1 and {len(LANGUAGES)}, got {num_languages}")
    missing_bytes = [byte for byte in range(256) if bytes([byte]) not in ranks]
    if missing_bytes:
        raise ValueError(f"{source}: byte-level BPE needs all 256 single-byte tokens; missing {bytes(missing_bytes)!r}")

    special = _special_tokens(num_languages)
    end_of_text = special[0]
    vocab = {_spell(token): rank for token, rank in ranks.items()}
    vocab[end_of_text] = len(ranks)
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=_recover_merges(ranks, source),
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    )
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in special])
    if with_timestamps:
        tokenizer.add_tokens([AddedToken(token, special=False, normalized=True) for token in _timestamp_tokens()])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftranscript|> <|notimestamps|> $A <|endoftext|>",
        pair="<|startoftranscript|> <|notimestamps|> $A $B:1 <|endoftext|>:1",
        special_tokens=[(token, tokenizer.token_to_id(token)) for token in (special[1], special[-1], end_of_text)],
    )
    return tokenizer
