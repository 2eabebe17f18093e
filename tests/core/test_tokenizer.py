"""WhisperTokenizer against transformers 4.57.6 with the real tiny.en and base tokenizer files."""

from __future__ import annotations

import re

import numpy as np
import pytest

from whisper_core import LANGUAGES, TO_LANGUAGE_CODE, WhisperTokenizer

TEXTS = [
    "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
    " leading space and  double  spaces\tand tabs\n\nand newlines",
    "Numbers 1234567, 3.14159 and 1st/2nd/3rd; symbols @#$%^&*()[]{}<>~`|\\",
    "日本語のテキストです。中文文本。",
    "Привет, мир! Как дела?",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "안녕하세요 세계",
    "emoji 😀🎉👍🏽 and accents àéîõü ñ ß",
    "<|startoftranscript|> special tokens <|en|> inside <|notimestamps|> text <|0.00|>",
    "",
]


def reference_from(directory):
    """transformers' fast and slow tokenizers, loaded from a directory our save_pretrained wrote."""
    from transformers import WhisperTokenizer as Slow
    from transformers import WhisperTokenizerFast as Fast

    return Fast.from_pretrained(directory), Slow.from_pretrained(directory)


@pytest.fixture(scope="module", params=["tiny.en", "base"])
def pair(request, tmp_path_factory, tiny_en_tokenizer_dir, base_tokenizer_dir):
    source = tiny_en_tokenizer_dir if request.param == "tiny.en" else base_tokenizer_dir
    ours = WhisperTokenizer.from_pretrained(source)
    saved = tmp_path_factory.mktemp(request.param)
    ours.save_pretrained(saved)
    fast, slow = reference_from(saved)
    return request.param, ours, fast, slow, source


def test_language_table_matches_transformers():
    from transformers.models.whisper.tokenization_whisper import LANGUAGES as REF_LANGUAGES
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE as REF_CODES

    assert list(LANGUAGES.items()) == list(REF_LANGUAGES.items())
    assert TO_LANGUAGE_CODE == REF_CODES


@pytest.mark.parametrize(
    ("language", "task", "timestamps"),
    [
        (None, None, False),
        ("en", "transcribe", False),
        ("english", "translate", True),
        ("<|fr|>", "transcribe", False),
        ("castilian", None, True),
    ],
)
def test_ids_match_transformers(pair, language, task, timestamps):
    name, ours, fast, slow, _ = pair
    ours.set_prefix_tokens(language=language, task=task, predict_timestamps=timestamps)
    reference_language = None if language is None else language.strip("<|>")
    fast.set_prefix_tokens(language=reference_language, task=task, predict_timestamps=timestamps)
    slow.set_prefix_tokens(language=reference_language, task=task, predict_timestamps=timestamps)
    for text in TEXTS:
        ids = ours(text)["input_ids"]
        assert ids == fast(text)["input_ids"] == slow(text)["input_ids"], (name, text)
        assert ours.encode(text, add_special_tokens=False) == fast.encode(text, add_special_tokens=False), text
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == fast.decode(ids, skip_special_tokens=skip), text
        assert ours.get_special_tokens_mask(
            ours.encode(text, add_special_tokens=False)
        ) == fast.get_special_tokens_mask(fast.encode(text, add_special_tokens=False))
    assert ours.prefix_tokens == fast.prefix_tokens
    assert ours.get_decoder_prompt_ids(language=reference_language, task=task) == fast.get_decoder_prompt_ids(
        language=reference_language, task=task
    )


def test_batches_padding_and_tensors(pair):
    _, ours, fast, _, _ = pair
    ours.set_prefix_tokens(language="en", task="transcribe", predict_timestamps=False)
    fast.set_prefix_tokens(language="en", task="transcribe", predict_timestamps=False)
    mine = ours(TEXTS, padding=True, return_tensors="np")
    theirs = fast(TEXTS, padding=True, return_tensors="np")
    assert np.array_equal(mine["input_ids"], theirs["input_ids"])
    assert np.array_equal(mine["attention_mask"], theirs["attention_mask"])
    truncated = ours(TEXTS[:3], truncation=True, max_length=8)["input_ids"]
    assert truncated == fast(TEXTS[:3], truncation=True, max_length=8)["input_ids"]
    assert ours.batch_decode(mine["input_ids"], skip_special_tokens=True) == fast.batch_decode(
        theirs["input_ids"], skip_special_tokens=True
    )
    torch_ids = ours(TEXTS[0], return_tensors="pt")["input_ids"]
    assert ours.decode(torch_ids) == ours.decode(mine["input_ids"][0][: torch_ids.shape[-1]])
    assert ours.create_token_type_ids_from_sequences([1, 2], [3]) == fast.create_token_type_ids_from_sequences(
        [1, 2], [3]
    )


def test_timestamps_offsets_and_prompts(pair):
    _, ours, fast, _, _ = pair
    begin = ours.timestamp_begin
    assert begin == fast.all_special_ids[-1] + 1 == ours.convert_tokens_to_ids("<|notimestamps|>") + 1
    words = ours.encode(" hello world, and another window here", add_special_tokens=False)
    # Two 30 s windows: the second restarts at <|0.40|>; one segment ends on a lone timestamp.
    sequence = [
        ours.prefix_tokens[0],
        begin,
        *words[:2],
        begin + 50,
        begin + 60,
        *words[2:4],
        begin + 100,
        begin + 20,
        *words[4:6],
        begin + 40,
        begin + 40,
        *words[6:],
        begin + 90,
        ours.eos_token_id,
    ]
    for kwargs in (
        {"decode_with_timestamps": True},
        {"output_offsets": True},
        {"skip_special_tokens": True, "decode_with_timestamps": True},
        {"skip_special_tokens": True},
        {},
    ):
        assert ours.decode(sequence, **kwargs) == fast.decode(sequence, **kwargs), kwargs
    assert ours.decode(sequence[:1] + sequence[-2:], output_offsets=True) == fast.decode(
        sequence[:1] + sequence[-2:], output_offsets=True
    )
    prompt = ours.get_prompt_ids("Glossary: Kennedy, Americans")
    assert np.array_equal(prompt, fast.get_prompt_ids("Glossary: Kennedy, Americans"))
    prompted = [*prompt.tolist(), *sequence]
    assert ours.decode(prompted, skip_special_tokens=True) == fast.decode(prompted, skip_special_tokens=True)
    assert ours.decode(prompt.tolist(), skip_special_tokens=True) == ""
    with pytest.raises(ValueError, match="special token"):
        ours.get_prompt_ids("sneaky <|endoftext|>")


def test_vocab_files_and_tiktoken_load_the_same_ids(pair, tmp_path, openai_assets):
    name, _, _, slow, source = pair
    ours = WhisperTokenizer.from_pretrained(source)
    slow.set_prefix_tokens(language="en", task="transcribe", predict_timestamps=False)
    slow.save_pretrained(tmp_path)  # vocab.json + merges.txt + added_tokens.json, no tokenizer.json
    (tmp_path / "tokenizer.json").unlink(missing_ok=True)
    from_vocab = WhisperTokenizer.from_pretrained(tmp_path, language=None, task=None)
    # HF's multilingual tokenizer.json lost the merge "Ġ t" (see test_tiktoken_conversion.py), so
    # OpenAI's multilingual.tiktoken is compared with it there, with the merge restored.
    from_tiktoken = WhisperTokenizer.from_pretrained(openai_assets / "gpt2.tiktoken") if name == "tiny.en" else None
    for text in TEXTS:
        expected = ours(text)["input_ids"]
        assert from_vocab(text)["input_ids"] == expected, text
        if from_tiktoken is not None:
            assert from_tiktoken(text)["input_ids"] == expected, text
    assert from_vocab.all_special_ids == ours.all_special_ids


def test_save_vocabulary_and_normalizer_round_trip(tiny_en_tokenizer_dir, openai_assets, tmp_path):
    import json

    spelling = json.loads((openai_assets.parent / "normalizers" / "english.json").read_text())
    tokenizer = WhisperTokenizer.from_pretrained(tiny_en_tokenizer_dir, english_spelling_normalizer=spelling)
    files = tokenizer.save_vocabulary(tmp_path)
    assert {path.name for path in files} == {"vocab.json", "merges.txt", "normalizer.json"}
    tokenizer.save_pretrained(tmp_path / "full")
    again = WhisperTokenizer.from_pretrained(tmp_path / "full")
    assert again.english_spelling_normalizer == spelling
    from transformers import WhisperTokenizerFast

    reference = WhisperTokenizerFast.from_pretrained(tmp_path / "full")
    text = " Mr. Smith's colour, twenty five centimetres, 1,000,000 dollars!"
    assert again.normalize(text) == reference.normalize(text)
    assert again.basic_normalize("Héllo, Wörld!", remove_diacritics=True) == reference.basic_normalize(
        "Héllo, Wörld!", remove_diacritics=True
    )
    ids = again(text)["input_ids"]
    assert again.decode(ids, normalize=True) == reference.decode(ids, normalize=True)
    assert again.decode(ids, basic_normalize=True) == reference.decode(ids, basic_normalize=True)


def test_bad_input_is_refused(tiny_en_tokenizer_dir, base_tokenizer_dir, tmp_path):
    tokenizer = WhisperTokenizer.from_pretrained(base_tokenizer_dir)
    with pytest.raises(ValueError, match="unknown language 'klingon'"):
        tokenizer.set_prefix_tokens(language="klingon")
    with pytest.raises(ValueError, match="unknown task"):
        tokenizer.set_prefix_tokens(task="summarize")
    with pytest.raises(FileNotFoundError, match="holds no Whisper tokenizer"):
        WhisperTokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="tiktoken"):
        WhisperTokenizer.from_pretrained(tmp_path / "missing.tiktoken")
    assert tokenizer.language is None  # the failed calls changed nothing
    assert "yue" not in WhisperTokenizer.from_pretrained(tiny_en_tokenizer_dir).language_token_ids()
    tokenizer = WhisperTokenizer.from_pretrained(tiny_en_tokenizer_dir)
    before = tokenizer.prefix_tokens
    with pytest.raises(ValueError, match=re.escape("<|yue|>")):
        tokenizer.set_prefix_tokens(language="cantonese")
    with pytest.raises(ValueError, match="task"):
        tokenizer.set_prefix_tokens(language="english", task="summarize")
    assert tokenizer.prefix_tokens == before  # a rejected call changes nothing


def test_synthesized_transcripts_round_trip(base_tokenizer_dir):
    tokenizer = WhisperTokenizer.from_pretrained(base_tokenizer_dir, language="german", task="transcribe")
    ids = tokenizer("Guten Morgen, wie geht es dir heute?")["input_ids"]
    assert ids[:3] == [
        tokenizer.convert_tokens_to_ids(t) for t in ("<|startoftranscript|>", "<|de|>", "<|transcribe|>")
    ]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Guten Morgen, wie geht es dir heute?"


def test_default_suppression_lists_match_the_real_checkpoints(pair, openai_assets):
    """The non-speech and prefix-only tokens, spelled by our tokenizer and by one built from openai-whisper's
    ``.tiktoken`` file, equal the lists CTranslate2's converter took from HF's generation configs."""
    import json

    from weights_bridge.data_packages import metadata_dir
    from whisper_core.decoding.suppression import default_begin_suppress_tokens, default_suppress_tokens

    name, _, _, _, source = pair
    shipped = json.loads((metadata_dir(name) / "config.json").read_text())
    tiktoken = openai_assets / ("gpt2.tiktoken" if name == "tiny.en" else "multilingual.tiktoken")
    for tokenizer in (WhisperTokenizer.from_pretrained(source), WhisperTokenizer.from_pretrained(tiktoken)):
        assert default_suppress_tokens(tokenizer) == shipped["suppress_ids"]
        assert default_begin_suppress_tokens(tokenizer) == shipped["suppress_ids_begin"]
