"""``.tiktoken`` -> ``tokenizers.Tokenizer`` conversion against the real HF Whisper files.

Two references: the ``tokenizer.json`` files of tiny.en (English-only, gpt2.tiktoken) and base
(multilingual.tiktoken) from the data packages, and a small re-implementation of OpenAI's own
rank-based BPE, which is what Whisper was trained with.

Known differences from the HF files, asserted below so that they stay deliberate:
- HF's multilingual ``tokenizer.json`` lacks the first merge ``Ġ t`` (49999 merges instead of
  50000), so it encodes ``" the"`` as ``Ġ`` + ``the``; OpenAI and the converter give ``Ġthe``.
  The encode comparisons use the HF base file with that merge put back.
- HF's tiny.en file names Hebrew ``<|iw|>`` (its old code); openai-whisper, HF's multilingual
  files and transformers' LANGUAGES say ``<|he|>``, as the converter does. Same id either way.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from whisper_core.languages import LANGUAGES
from whisper_core.tiktoken_conversion import load_tiktoken_ranks, tokenizer_from_tiktoken

# OpenAI's pre-tokenization pattern for both Whisper vocabularies (tiktoken's "gpt2").
GPT2_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

TEXTS = [
    "",
    " ",
    "a",
    "Hello world",
    " the",
    "the cat sat on the mat",
    "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
    "It's, isn't it? They're here; we've gone—I'm sure you'll see. He'd go!",
    "Punctuation!!! ??? ... --- *** ((brackets)) [x] {y} <z> \"quoted\" 'single' `tick`",
    "Numbers: 0 1 12 123 1234 12345 3.14159 -42 1e10 1,000,000 2024-01-31 12:30:45",
    "Whitespace    runs\t\ttabs   and  spaces   ",
    "line one\nline two\n\nline four\r\nwindows\n\n\n",
    "   leading and trailing   ",
    "\n",
    "Emoji 😀🎉👍🏽 👨‍👩‍👧‍👦 🇯🇵 ✨",
    "中文测试：你好，世界！今天天气很好。",
    "日本語のテキスト、カタカナとひらがな。漢字も。",
    "Русский текст: Съешь же ещё этих мягких французских булок.",
    "النص العربي: مرحبا بالعالم",
    "हिन्दी पाठ: नमस्ते दुनिया",
    "한국어 텍스트: 안녕하세요 세계",
    "Ελληνικά, עברית, ไทย, Tiếng Việt, Türkçe, Ærøskøbing, naïve café",
    "Mixed: English中文Русский123😀!",
    "Control \x00\x01\x7f and soft\xadhyphen and nbsp\xa0here",
    "<|endoftext|>",
    "before<|endoftext|>after",
    "<|startoftranscript|><|en|><|transcribe|><|notimestamps|> Hello<|endoftext|>",
    "text with <|startofprev|> previous and <|nocaptions|> and <|ja|> inside",
    "not special: <|endoftext| <|xx|> <|> |>",
    "a" * 300,
    " " * 50 + "x",
    "https://example.com/path?query=1&b=2#frag user@example.org",
    "def f(x):\n    return x ** 2  # comment\n",
]


def openai_encode(ranks: dict[bytes, int], text: str) -> list[int]:
    """OpenAI's tokenization (tiktoken's algorithm): split by the pattern, then per piece join
    the adjacent pair whose concatenation has the lowest rank until none is a token."""
    ids: list[int] = []
    for piece in GPT2_PATTERN.findall(text):
        parts = [bytes([byte]) for byte in piece.encode()]
        while len(parts) > 1:
            candidates = [(ranks.get(parts[i] + parts[i + 1]), i) for i in range(len(parts) - 1)]
            candidates = [(rank, i) for rank, i in candidates if rank is not None]
            if not candidates:
                break
            _, i = min(candidates)
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        ids.extend(ranks[part] for part in parts)
    return ids


@pytest.fixture(scope="module")
def gpt2_path(openai_assets: Path) -> Path:
    return openai_assets / "gpt2.tiktoken"


@pytest.fixture(scope="module")
def multilingual_path(openai_assets: Path) -> Path:
    return openai_assets / "multilingual.tiktoken"


@pytest.fixture(scope="module")
def english(gpt2_path: Path) -> Tokenizer:
    return tokenizer_from_tiktoken(gpt2_path, with_timestamps=False)


@pytest.fixture(scope="module")
def multilingual(multilingual_path: Path) -> Tokenizer:
    return tokenizer_from_tiktoken(multilingual_path, with_timestamps=False)


@pytest.fixture(scope="module")
def hf_english_json(tiny_en_tokenizer_dir: Path) -> dict:
    return json.loads((tiny_en_tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def hf_english(hf_english_json: dict) -> Tokenizer:
    return Tokenizer.from_str(json.dumps(hf_english_json))


@pytest.fixture(scope="module")
def hf_multilingual_json(base_tokenizer_dir: Path) -> dict:
    return json.loads((base_tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def hf_multilingual(hf_multilingual_json: dict) -> Tokenizer:
    """HF's base tokenizer as published (missing the ``Ġ t`` merge)."""
    return Tokenizer.from_str(json.dumps(hf_multilingual_json))


@pytest.fixture(scope="module")
def hf_multilingual_fixed(hf_multilingual_json: dict) -> Tokenizer:
    """HF's base tokenizer with its lost first merge restored."""
    data = json.loads(json.dumps(hf_multilingual_json))
    assert "Ġ t" not in data["model"]["merges"]
    data["model"]["merges"].insert(0, "Ġ t")
    return Tokenizer.from_str(json.dumps(data))


@pytest.fixture(scope="module")
def gpt2_ranks(gpt2_path: Path) -> dict[bytes, int]:
    return load_tiktoken_ranks(gpt2_path)


@pytest.fixture(scope="module")
def multilingual_ranks(multilingual_path: Path) -> dict[bytes, int]:
    return load_tiktoken_ranks(multilingual_path)


@pytest.fixture(scope="module")
def pairs(english, hf_english, multilingual, hf_multilingual_fixed, gpt2_ranks, multilingual_ranks):
    """(name, converted, HF reference, OpenAI ranks) for both vocabularies."""
    return [
        ("tiny.en", english, hf_english, gpt2_ranks),
        ("base", multilingual, hf_multilingual_fixed, multilingual_ranks),
    ]


# ---------------------------------------------------------------- the rank files themselves


def test_load_real_rank_files(gpt2_ranks, multilingual_ranks):
    assert len(gpt2_ranks) == 50256
    assert sorted(gpt2_ranks.values()) == list(range(50256))
    assert len(multilingual_ranks) == 50257
    # multilingual.tiktoken ends with the empty token, written as a lone "=".
    assert multilingual_ranks[b""] == 50256
    assert gpt2_ranks[b"!"] == 0 and gpt2_ranks[b" the"] == 262
    assert multilingual_ranks[b" the"] == 264


# ---------------------------------------------------------------- vocabulary and ids


def test_special_token_ids(english, multilingual):
    assert english.token_to_id("<|endoftext|>") == 50256
    assert english.token_to_id("<|startoftranscript|>") == 50257
    assert english.token_to_id("<|en|>") == 50258
    assert english.token_to_id("<|notimestamps|>") == 50362
    assert multilingual.token_to_id("<|endoftext|>") == 50257
    assert multilingual.token_to_id("<|startoftranscript|>") == 50258
    assert multilingual.token_to_id("<|su|>") == 50357
    assert multilingual.token_to_id("<|translate|>") == 50358
    assert multilingual.token_to_id("<|transcribe|>") == 50359
    assert multilingual.token_to_id("<|nocaptions|>") == 50362
    assert multilingual.token_to_id("<|notimestamps|>") == 50363
    assert multilingual.token_to_id("<|yue|>") is None
    assert multilingual.get_vocab_size() == 50364


def test_vocab_matches_hf_tiny_en(english, hf_english):
    ours = english.get_vocab(with_added_tokens=True)
    theirs = hf_english.get_vocab(with_added_tokens=True)
    assert len(ours) == len(theirs) == 50363
    assert set(ours.items()) - set(theirs.items()) == {("<|he|>", 50278)}
    assert set(theirs.items()) - set(ours.items()) == {("<|iw|>", 50278)}


def test_vocab_matches_hf_base(multilingual, hf_multilingual):
    ours = multilingual.get_vocab(with_added_tokens=True)
    theirs = hf_multilingual.get_vocab(with_added_tokens=True)
    assert len(ours) == 50364
    assert ours == theirs
    # Every id, including the empty token at 50256, names the same token.
    assert all(multilingual.id_to_token(i) == hf_multilingual.id_to_token(i) for i in range(50364))


def test_tokenizer_json_matches_hf(english, hf_english_json, multilingual, hf_multilingual_json):
    """Whole ``tokenizer.json`` equal to HF's, apart from the documented differences."""
    for ours, theirs in (
        (json.loads(english.to_str()), hf_english_json),
        (json.loads(multilingual.to_str()), hf_multilingual_json),
    ):
        for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder", "truncation", "padding"):
            assert ours[key] == theirs[key], key
        ours_model, theirs_model = ours["model"], theirs["model"]
        assert ours_model["vocab"] == theirs_model["vocab"]
        for key in ("type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk"):
            assert ours_model[key] == theirs_model[key], key
        assert not ours_model["byte_fallback"] and not ours_model["ignore_merges"]
        ours_added = [token for token in ours["added_tokens"] if token["content"] != "<|he|>"]
        theirs_added = [token for token in theirs["added_tokens"] if token["content"] not in ("<|he|>", "<|iw|>")]
        assert ours_added == theirs_added
    english_merges = [" ".join(pair) for pair in json.loads(english.to_str())["model"]["merges"]]
    assert english_merges == hf_english_json["model"]["merges"]
    assert len(english_merges) == 50000
    multilingual_merges = [" ".join(pair) for pair in json.loads(multilingual.to_str())["model"]["merges"]]
    assert len(multilingual_merges) == 50000 and len(hf_multilingual_json["model"]["merges"]) == 49999
    assert multilingual_merges == ["Ġ t", *hf_multilingual_json["model"]["merges"]]


def test_hf_base_file_lost_first_merge(multilingual, hf_multilingual, multilingual_ranks):
    """Why the converter does not copy HF's 49999 merges: OpenAI encodes " the" as one token."""
    assert openai_encode(multilingual_ranks, " the") == [264]
    assert multilingual.encode(" the", add_special_tokens=False).ids == [264]
    assert hf_multilingual.encode(" the", add_special_tokens=False).ids == [220, 3322]


# ---------------------------------------------------------------- encode and decode


@pytest.mark.parametrize("text", TEXTS)
def test_encode_decode_match_hf(pairs, text):
    for name, ours, theirs, _ in pairs:
        for add_special_tokens in (False, True):
            ours_ids = ours.encode(text, add_special_tokens=add_special_tokens).ids
            theirs_ids = theirs.encode(text, add_special_tokens=add_special_tokens).ids
            assert ours_ids == theirs_ids, (name, add_special_tokens)
        ids = ours.encode(text).ids
        for skip_special_tokens in (False, True):
            decoded = ours.decode(ids, skip_special_tokens=skip_special_tokens)
            assert decoded == theirs.decode(ids, skip_special_tokens=skip_special_tokens), name
        assert ours.decode(ours.encode(text, add_special_tokens=False).ids, skip_special_tokens=False) == text


@pytest.mark.parametrize("text", [text for text in TEXTS if "<|" not in text])
def test_encode_matches_openai(pairs, text):
    for name, ours, _, ranks in pairs:
        assert ours.encode(text, add_special_tokens=False).ids == openai_encode(ranks, text), name


def test_template_wraps_text(english):
    ids = english.encode("Hello").ids
    assert ids[:2] == [50257, 50362] and ids[-1] == 50256


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80) | st.lists(st.sampled_from([*TEXTS[1:], "\u0301", "x", "\t"]), max_size=6).map("".join))
def test_random_text_matches_hf_and_openai(pairs, text):
    for name, ours, theirs, ranks in pairs:
        ids = ours.encode(text, add_special_tokens=False).ids
        assert ids == theirs.encode(text, add_special_tokens=False).ids, name
        if "<|" not in text:
            assert ids == openai_encode(ranks, text), name
        assert ours.decode(ids, skip_special_tokens=False) == theirs.decode(ids, skip_special_tokens=False) == text


# ---------------------------------------------------------------- options


def test_timestamp_tokens(gpt2_path, multilingual_path, multilingual):
    for path, no_timestamps in ((gpt2_path, 50362), (multilingual_path, 50363)):
        tokenizer = tokenizer_from_tiktoken(path)
        assert tokenizer.token_to_id("<|notimestamps|>") == no_timestamps
        assert tokenizer.token_to_id("<|0.00|>") == no_timestamps + 1
        assert tokenizer.token_to_id("<|0.02|>") == no_timestamps + 2
        assert tokenizer.token_to_id("<|1.50|>") == no_timestamps + 1 + 75
        assert tokenizer.token_to_id("<|30.00|>") == no_timestamps + 1501
        assert tokenizer.get_vocab_size() == no_timestamps + 1502
    added = {token["content"]: token for token in json.loads(tokenizer.to_str())["added_tokens"]}
    assert added["<|0.00|>"]["special"] is False and added["<|0.00|>"]["normalized"] is True
    assert added["<|notimestamps|>"]["special"] is True
    # Not special: kept when special tokens are skipped; one id each when encoded.
    ids = tokenizer.encode("<|0.00|> Hello<|1.00|>", add_special_tokens=False).ids
    assert ids == [50364, *multilingual.encode(" Hello", add_special_tokens=False).ids, 50364 + 50]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<|0.00|> Hello<|1.00|>"
    # Ids below the timestamps are unchanged.
    assert all(tokenizer.id_to_token(i) == multilingual.id_to_token(i) for i in range(50364))


def test_large_v3_layout(multilingual_path):
    tokenizer = tokenizer_from_tiktoken(multilingual_path, num_languages=100)
    assert tokenizer.token_to_id("<|endoftext|>") == 50257
    assert tokenizer.token_to_id("<|startoftranscript|>") == 50258
    assert tokenizer.token_to_id("<|yue|>") == 50358
    assert tokenizer.token_to_id("<|translate|>") == 50359
    assert tokenizer.token_to_id("<|transcribe|>") == 50360
    assert tokenizer.token_to_id("<|nospeech|>") == 50363
    assert tokenizer.token_to_id("<|nocaptions|>") is None
    assert tokenizer.token_to_id("<|notimestamps|>") == 50364
    assert tokenizer.get_vocab_size() == 51866  # large-v3's vocab_size
    assert [tokenizer.id_to_token(50259 + i) for i in range(100)] == [f"<|{code}|>" for code in LANGUAGES]


@pytest.mark.parametrize("num_languages", [0, -1, len(LANGUAGES) + 1])
def test_rejects_bad_num_languages(gpt2_path, num_languages):
    with pytest.raises(ValueError, match="num_languages"):
        tokenizer_from_tiktoken(gpt2_path, num_languages=num_languages)


def test_import_pulls_in_no_framework():
    code = (
        "import sys, whisper_core.tiktoken_conversion; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- small synthetic files


def write_ranks(path: Path, tokens: list[bytes]) -> Path:
    path.write_text("".join(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(tokens)))
    return path


BYTES = [bytes([byte]) for byte in range(256)]


def test_merge_is_what_bpe_ends_with(tmp_path):
    """For "abc", "bc" outranks "ab", so BPE reaches "a" + "bc": that is the merge, not "ab" + "c"."""
    path = write_ranks(tmp_path / "small.tiktoken", [*BYTES, b"bc", b"ab", b"abc", b"abcabc"])
    tokenizer = tokenizer_from_tiktoken(path, num_languages=1, with_timestamps=False)
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    assert merges == [["b", "c"], ["a", "b"], ["a", "bc"], ["abc", "abc"]]
    assert tokenizer.encode("abcabc abc ab", add_special_tokens=False).ids == [259, 32, 258, 32, 257]
    assert tokenizer.token_to_id("<|endoftext|>") == 260
    assert tokenizer.token_to_id("<|en|>") == 262
    assert tokenizer.token_to_id("<|notimestamps|>") == 268


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("IQ== 0\n!!!! 1\n", 2, "invalid base64"),
        ("IQ== 0\nIg=== 1\n", 2, "invalid base64"),
        ("IQ== 0\nI 1\n", 2, "invalid base64"),
        ("IQ== 0\nIg==\n", 2, "expected 'base64_token rank'"),
        ("IQ== 0\nIg== 1 extra\n", 2, "expected 'base64_token rank'"),
        ("IQ== 0\nIg== one\n", 2, "rank must be a non-negative integer"),
        ("IQ== 0\nIg== -1\n", 2, "rank must be a non-negative integer"),
        ("IQ== 0\nIg== 1\nIw== 1\n", 3, "duplicate rank 1 (first on line 2)"),
        ("IQ== 0\n\nIQ== 1\n", 3, "duplicate token"),
    ],
)
def test_malformed_line(tmp_path, content, line, message):
    path = tmp_path / "bad.tiktoken"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(f"bad.tiktoken, line {line}: {message}")):
        load_tiktoken_ranks(path)
    with pytest.raises(ValueError, match=re.escape("bad.tiktoken")):
        tokenizer_from_tiktoken(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.tiktoken"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape("empty.tiktoken: no tokens")):
        load_tiktoken_ranks(path)


def test_rank_gap(tmp_path):
    path = tmp_path / "gap.tiktoken"
    path.write_text("IQ== 0\nIg== 2\n")
    with pytest.raises(ValueError, match=re.escape("gap.tiktoken: rank 1 is missing")):
        load_tiktoken_ranks(path)


def test_missing_single_byte(tmp_path):
    path = write_ranks(tmp_path / "bytes.tiktoken", BYTES[:-1])
    assert len(load_tiktoken_ranks(path)) == 255
    with pytest.raises(ValueError, match=re.escape("bytes.tiktoken: byte-level BPE needs all 256 single-byte tokens")):
        tokenizer_from_tiktoken(path)


def test_token_bpe_cannot_build(tmp_path):
    path = write_ranks(tmp_path / "orphan.tiktoken", [*BYTES, b"abc"])
    with pytest.raises(ValueError, match=re.escape("orphan.tiktoken: token b'abc' (rank 256) cannot be built")):
        tokenizer_from_tiktoken(path)


def test_special_token_ids_follow_the_vocabulary_layout():
    from whisper_core.tiktoken_conversion import special_token_ids

    large_v3 = special_token_ids(51866)  # 100 languages: Cantonese last, every later id one higher
    assert (large_v3["<|yue|>"], large_v3["<|translate|>"], large_v3["<|notimestamps|>"]) == (50358, 50359, 50364)
    assert "<|yue|>" not in special_token_ids(51865) and special_token_ids(51864)["<|endoftext|>"] == 50256
    with pytest.raises(ValueError, match="not a Whisper vocabulary"):
        special_token_ids(96)
