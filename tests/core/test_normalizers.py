"""Whisper's text normalisers against transformers 4.57.6's english_normalizer.py, output for output."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_core.normalizers import (
    BasicTextNormalizer,
    EnglishNumberNormalizer,
    EnglishSpellingNormalizer,
    EnglishTextNormalizer,
    remove_symbols,
    remove_symbols_and_diacritics,
)


def _spelling_mapping() -> dict[str, str]:
    """openai-whisper's British -> American map: the same content as a tokenizer's normalizer.json."""
    spec = importlib.util.find_spec("whisper")  # locates the package without importing it (and torch)
    assert spec is not None and spec.origin is not None, "the openai-whisper package is not installed"
    return json.loads((Path(spec.origin).parent / "normalizers" / "english.json").read_text(encoding="utf-8"))


SPELLINGS = _spelling_mapping()
BASIC_FLAGS = [(False, False), (True, False), (False, True), (True, True)]  # (remove_diacritics, split_letters)


@pytest.fixture(scope="module")
def reference():
    from transformers.models.whisper import english_normalizer

    return english_normalizer


@pytest.fixture(scope="module")
def english_pair(reference):
    return EnglishTextNormalizer(SPELLINGS), reference.EnglishTextNormalizer(SPELLINGS)


@pytest.fixture(scope="module")
def basic_pairs(reference):
    return {flags: (BasicTextNormalizer(*flags), reference.BasicTextNormalizer(*flags)) for flags in BASIC_FLAGS}


NUMBER_SENTENCES = [
    "twenty five",
    "one hundred and two",
    "a hundred",
    "a hundred and fifty people",
    "two thousand five hundred and sixty seven",
    "one million two hundred thousand",
    "three billion dollars",
    "nineteen ninety nine",
    "nineteen eighty-four",
    "in the nineteen sixties and the 1960s",
    "two thousand and twenty",
    "one oh one",
    "oh oh seven",
    "zero point five",
    "point five",
    "0 point 5",
    "three point one four one five nine",
    "one point oh five million",
    "1.5 million",
    "two point five billion people",
    "twelve hundred",
    "ninety nine thousand nine hundred ninety nine",
    "one two three four",
    "five five five one two one two",
    "double five triple seven double oh",
    "double trouble and triple threat",
    "1,000,000",
    "1,234.56",
    "12,34,56",
    "$20 million",
    "$20",
    "$1",
    "$0.07",
    "$0.5",
    "$1.5 billion",
    "£5 and ¢7",
    "€10.50",
    "¢99",
    "$2 and ¢7",
    "zero dollars twelve",
    "$0 50",
    "£0-5",
    "five dollars and seven cents",
    "five dollars seven cents",
    "twenty pounds",
    "one euro",
    "a dollar",
    "sixty cents",
    "ten pounds fifty",
    "3.5%",
    "three point five percent",
    "fifty per cent",
    "fifty per person",
    "100%",
    "% of people",
    "per cent",
    "1st",
    "2nd place",
    "3rd",
    "4th of july",
    "the 21 st century",
    "twenty-second",
    "twenty second",
    "first second third fourth fifth",
    "the twelfth night",
    "the ninth and nineteenth",
    "the nineth (sic)",
    "the eighth",
    "zeroth law",
    "hundredth",
    "two thousandth",
    "one millionth",
    "the twenties",
    "the fifties and sixties",
    "ones and twos",
    "sixes and sevens",
    "thousands of people",
    "hundreds",
    "twentieth century",
    "minus five",
    "negative twenty degrees",
    "plus three",
    "positive",
    "minus minus cat",
    "minus and cats",
    "plus point hundred",
    "minus 5",
    "two and a half",
    "two and a half hours",
    "a hundred and a half",
    "and a half",
    "she had a cat and a half",
    "one and a half and a half",
    "one",
    "ones",
    "1",
    "1s",
    "I have 1 apple and 2 oranges",
    "covid19",
    "19covid",
    "a1b2c3",
    "mp3 player",
    "route 66",
    "192.168.0.1",
    "one nine two point one six eight point zero point one",
    "version 2.0",
    "0 hundred",
    "zero hundred",
    "o",
    "oh",
    "o five",
    "point",
    "the point is",
    "and",
    "hundred and",
    "hundred and and",
    "one hundred and cats",
    "seven eleven",
    "eleven seven",
    "twenty eleven",
    "nineteen oh five",
    "one oh twenty five",
    "twenty twenty two",
    "four score and seven years ago",
    "1/2 a cup",
    "½ a cup",
    "x² plus y²",
    "three quarters",
    "fifteen hundred and twelve",
    "one thousand one",
    "a million billion",
    "octillion decillions",
    "1e10",
    "-5 degrees",
    "+5",
    "007",
    "1.50",
    "0.001 hundred",
    "1.2.3 hundred",
    "5 hundreds",
    "1.2.3 hundreds",
    "0 hundredth",
    "٣ apples",
    "١٢ point ٥",
    "twenty ٣",
    "the year 2000",
    "in 1999 and 2000s",
]

SPEECH_SENTENCES = [
    "",
    " ",
    "   \t\n  ",
    "\n",
    "Hello, World!",
    "  leading and trailing  ",
    "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
    "I won't go. You can't make me! Let's see, y'all.",
    "I ain't gonna do it, I wanna go, I gotta run.",
    "I'ma head out; imma go. I woulda, coulda, shoulda.",
    "Yes ma'am.",
    "He'd been there. She's been here. They'd gone. It's gone. We'd done it. He's got it.",
    "don't isn't wouldn't they're it's he'd we'll can't won't I've I'm",
    "don 't do that , it 's fine",
    "rock 'n' roll",
    "'tis the season",
    "the dog's bone",
    "Mr. Smith and Mrs. Jones met Dr. Who at St. Paul's.",
    "Prof. X, Capt. America, Gov. Newsom, Ald. Moore, Gen. Lee, Sen. Warren",
    "Rep. Ocasio, Pres. Lincoln, Rev. King, Hon. judge, Asst. manager, Assoc. professor",
    "Lt. Dan, Col. Sanders, Martin Luther King Jr., John Sr., Jane Esq.",
    "mr.5",
    "mr's",
    "Hmm, um, uh, mm, mhm, mmm... I see.",
    "hmmm ummm uhh",
    "[inaudible] hello <noise> world (laughs) again",
    "[music",
    "<a] b [c>",
    "(unclosed parenthesis",
    "()empty parens",
    "nested (a (b) c) text",
    "text [with] multiple [brackets] and (parens) (here)",
    "The colour of the centre is grey, the theatre's organisation apologised.",
    "I realise the neighbour's behaviour was favourable; analyse the catalogue.",
    "aeroplane, aluminium, cheque, defence, licence, manoeuvre, programme, tyre",
    "Colour COLOUR colour.",
    "well-known, state-of-the-art, re-enter",
    "e-mail and co-operate",
    "naïve café résumé façade jalapeño Zürich São Paulo Ångström",
    "œuvre, Ærø, straße, Łódź, þorn, Þór, ðe, đakovo",
    "hello...world",
    "hello..world",
    "end of sentence.",
    "a.b.c.",
    "U.S.A.",
    "e.g. i.e. etc.",
    ".5",
    "..5",
    "$$a",
    "$ .",
    "..",
    "%%",
    "a%b",
    "5%%",
    "@home #hashtag & more * stars + plus = equals",
    "quotes “double” ‘single’ «guillemets» „low“",
    "dashes – and — and ‒",
    "tab\tseparated\tvalues",
    "line\nbreaks\r\nand\rreturns",
    "non\u00a0breaking\u2009thin\u3000ideographic",
    "emoji 😀 and ❤️ and 👍🏽",
    "zero\u200bwidth\u200djoiner",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３",
    "ligatures ﬁ ﬂ ﬀ",
    "roman Ⅻ and circled ①",
    "ℌello ℍilbert",
    "The İstanbul ǅ Σίσυφος",
    "Привет, мир! Сто двадцать",
    "你好，世界！",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "안녕하세요 세계",
    "こんにちは、世界",
    "สวัสดีชาวโลก",
]

ENGLISH_SENTENCES = NUMBER_SENTENCES + SPEECH_SENTENCES + [s.capitalize() + "." for s in NUMBER_SENTENCES]

BASIC_SENTENCES = (
    SPEECH_SENTENCES
    + NUMBER_SENTENCES[:40]
    + [
        "Чёрный ёж съел щёку",
        "Ελληνικά κείμενα με τόνους",
        "中文文本，包含标点符号。以及（括号）",
        "日本語のテキスト「かぎかっこ」",
        "العربية مع التشكيل: مُحَمَّد",
        "हिन्दी में मात्राएँ और विराम।",
        "한국어 텍스트: 한글",
        "ภาษาไทย ที่ไม่มีช่องว่าง",
        "Tiếng Việt có dấu",
        "עברית עם ניקוד: שָׁלוֹם",
        "ქართული ენა",
        "Հայերեն լեզու",
        "ܐܪܡܝܐ",
        "각 conjoining jamo",
        "e\u0301 combining acute, a\u0308 umlaut",
        "regional 🇺🇸 flags 🇬🇧",
        "family 👨‍👩‍👧",
        "\u0600\u0661 prepend",
        "keycap 1️⃣",
    ]
)


@pytest.mark.parametrize("text", ENGLISH_SENTENCES)
def test_english_matches_reference(english_pair, text):
    ours, theirs = english_pair
    expected = theirs(text)
    assert ours(text) == expected, f"input {text!r}"


@pytest.mark.parametrize("flags", BASIC_FLAGS, ids=lambda flags: f"diacritics{int(flags[0])}-split{int(flags[1])}")
@pytest.mark.parametrize("text", BASIC_SENTENCES)
def test_basic_matches_reference(basic_pairs, flags, text):
    ours, theirs = basic_pairs[flags]
    expected = theirs(text)
    assert ours(text) == expected, f"input {text!r} with (remove_diacritics, split_letters)={flags}"


NUMBER_WORD_SEQUENCES = [
    "-5 +3 $5 £5 €5 ¢5",
    "minus -5",
    "$ five",
    "- +",
    "minus",
    "five dollars minus",
    "minus five dollars",
    "point 5 $5",
    "one point $5",
    "double",
    "triple oh",
    "double one one",
    "per",
    "five per",
    "five per cent cent",
    "percent",
    "five percent",
    "$1.5 million",
    "$0 hundred",
    "0 zero",
    "0 double five",
    "0 point five",
    "hundred and point five",
    "five hundredths",
    "1.5 hundredths",
    "1.5.5 thousands",
    "one two thousands",
]


@pytest.mark.parametrize("text", NUMBER_WORD_SEQUENCES + NUMBER_SENTENCES)
def test_number_normalizer_matches_reference(reference, text):
    """The number normaliser alone also sees signs and symbols that the full pipeline removes first."""
    expected = reference.EnglishNumberNormalizer()(text.lower())
    assert EnglishNumberNormalizer()(text.lower()) == expected, f"input {text!r}"


def test_spelling_normalizer_covers_the_whole_mapping(reference):
    british = list(SPELLINGS)
    assert len(british) > 1000
    for start in range(0, len(british), 50):
        text = " the ".join(british[start : start + 50])
        expected = reference.EnglishSpellingNormalizer(SPELLINGS)(text)
        assert EnglishSpellingNormalizer(SPELLINGS)(text) == expected, f"input {text!r}"
    assert EnglishSpellingNormalizer(SPELLINGS)("colour centre") == "color center"


@pytest.mark.parametrize("text", ["The colour is grey.", "Twenty five pounds, Mr. Smith.", "", "  x  "])
def test_no_spelling_mapping_means_no_spelling_changes(reference, text):
    """The reference cannot run without a mapping; ours skips the spelling step, like the reference with {}."""
    expected = reference.EnglishTextNormalizer({})(text)
    assert EnglishTextNormalizer(None)(text) == expected, f"input {text!r}"
    assert EnglishTextNormalizer()(text) == expected, f"input {text!r}"


def test_examples_read_as_documented(english_pair):
    ours, _ = english_pair
    assert ours("Twenty five dollars and seven cents, Mr. Smith!") == "$25.07 mister smith"
    assert ours("One hundred and two colours.") == "102 colors"
    assert ours("[music] um, it's 3.5% of 1,000,000") == "it is 3.5% of 1000000"
    assert BasicTextNormalizer()("Héllo, [noise] wörld!") == "héllo wörld "
    assert BasicTextNormalizer(remove_diacritics=True)("Héllo, wörld!") == "hello world "
    assert BasicTextNormalizer(split_letters=True)("你好，世界") == "你 好 世 界"


@pytest.mark.parametrize("keep", ["", ".%$¢€£"])
def test_symbol_helpers_match_reference(reference, keep):
    text = "Þór ẞ Œuvre Ærø Łódź Đ Ð, café «naïve» ½ ﬁ ℌ $5.00 50% ¢ € £ 你好 мир"
    assert remove_symbols_and_diacritics(text, keep) == reference.remove_symbols_and_diacritics(text, keep)
    assert remove_symbols(text) == reference.remove_symbols(text)


def test_import_pulls_in_no_framework():
    code = (
        "import sys, whisper_core.normalizers\n"
        "loaded = [m for m in ('torch', 'tensorflow', 'jax', 'transformers') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------------------------------
# Properties: random text gives the reference's output.

# fmt: off
_ENGLISH_TOKENS = [
    "zero", "oh", "o", "one", "two", "three", "five", "six", "eight", "nine", "ten", "eleven", "twelve", "thirteen",
    "nineteen", "twenty", "forty", "ninety", "hundred", "thousand", "million", "billion",
    "first", "second", "third", "fifth", "eighth", "nineth", "ninth", "twelfth", "twentieth", "hundredth",
    "thousandth", "sixes", "ones", "twenties", "hundreds", "millions",
    "and", "a", "half", "point", "double", "triple", "minus", "plus", "negative", "positive",
    "dollar", "dollars", "pound", "pounds", "euro", "euros", "cent", "cents", "per", "cent", "percent",
    "0", "1", "2", "5", "7", "10", "12", "19", "20", "99", "100", "1000", "0.5", "1.5", "3.14", "007", "1,000",
    "1,000,000", "$5", "£3", "€2", "¢7", "5%", "1st", "2nd", "3rd", "4th", "1960s",
    "won't", "can't", "it's", "he'd", "they're", "i'm", "we've", "you'll", "ma'am", "y'all", "gonna",
    "mr", "mrs", "dr", "st", "jr", "um", "hmm", "uh",
    "colour", "centre", "grey", "organisation", "theatre", "analyse", "programme", "the", "cat", "is", "of", "to",
    "café", "naïve", "straße", "½", "²", "٣", "你好", "привет",
    ".", ",", "!", "?", "-", "'", "(", ")", "[", "]", "<", ">", "$", "%", "£", "€", "¢", "&", "/", "...", "--",
]
# fmt: on
_SEPARATORS = [" ", " ", " ", "  ", "-", ",", ", ", ".", ". ", "'", "\n", "\t", ""]


@st.composite
def english_speech(draw) -> str:
    """Sequences of number words, digits, money, contractions, titles and punctuation, glued in varied ways."""
    tokens = draw(st.lists(st.sampled_from(_ENGLISH_TOKENS), max_size=14))
    separators = draw(st.lists(st.sampled_from(_SEPARATORS), min_size=len(tokens), max_size=len(tokens)))
    text = "".join(token + separator for token, separator in zip(tokens, separators, strict=True))
    return text.upper() if draw(st.booleans()) and draw(st.booleans()) else text


_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789"
    " \t\n\r\u00a0\u3000 .,;:!?'\"-–—()[]<>{}$%£€¢&@#*+=/\\_~^`|"
    "éèêëàâäåçñöøœæßðþłđİı ÉÅØŒÆẞ \u0301\u0308\u0327 ½²①ﬁＡ１ ℌ"
    "你好世界中文 привет мир ё مرحبا नमस्ते 안녕 한글 각 สวัสดี שָׁלוֹם"
    "😀👍🏽❤️\u200d\u200c\u200b\u0600"
)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(english_speech(), st.text(alphabet=_ALPHABET, max_size=60)))
def test_english_random_text_matches_reference(text):
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer as Reference

    expected = Reference(SPELLINGS)(text)
    assert EnglishTextNormalizer(SPELLINGS)(text) == expected, f"input {text!r}"


# Dense in number words, so that random sequences often hit the number reader's combinations.
# fmt: off
_NUMBER_TOKENS = [
    "zero", "oh", "one", "two", "five", "nine", "eleven", "twenty", "ninety", "hundred", "thousand", "million",
    "first", "fifth", "twelfth", "twentieth", "hundredth", "thousands", "sixes", "twenties",
    "and", "and", "point", "point", "double", "triple", "minus", "plus", "dollars", "cent", "cents", "per", "percent",
    "a", "half", "cat", "0", "1", "5", "12", "100", "0.5", "1.50", "007", "-5", "+3", "$5", "£0", "¢7", "$", "-",
    "1.2.3", "5s", "1st", "and a half",
]
# fmt: on


@settings(max_examples=300, deadline=None)
@given(tokens=st.lists(st.sampled_from(_NUMBER_TOKENS), max_size=10))
def test_number_words_random_sequences_match_reference(tokens):
    from transformers.models.whisper.english_normalizer import EnglishNumberNormalizer as Reference

    text = " ".join(tokens)
    expected = Reference()(text)
    assert EnglishNumberNormalizer()(text) == expected, f"input {text!r}"


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.text(alphabet=_ALPHABET, max_size=60), st.text(max_size=30)), flags=st.sampled_from(BASIC_FLAGS)
)
def test_basic_random_text_matches_reference(text, flags):
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer as Reference

    expected = Reference(*flags)(text)
    assert BasicTextNormalizer(*flags)(text) == expected, (
        f"input {text!r} with (remove_diacritics, split_letters)={flags}"
    )
