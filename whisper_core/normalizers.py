"""Whisper's transcript normalisers, used to score transcripts (WER) the way Whisper's evaluations do.

Word error rates are only comparable when every system's text goes through the very same normaliser, so this
module reproduces the output of the reference (transformers' ``english_normalizer``, itself OpenAI's
``whisper/normalizers``) character for character, oddities included: where the reference does something
surprising we follow it anyway, and the comment says "like the reference".

- :class:`BasicTextNormalizer`: language-neutral; lower-cases, drops bracketed annotations, turns punctuation
  and symbols into spaces and optionally strips diacritics or splits text into letters.
- :class:`EnglishTextNormalizer`: adds English contractions and titles, spelled-out numbers
  (:class:`EnglishNumberNormalizer`) and British to American spelling (:class:`EnglishSpellingNormalizer`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from fractions import Fraction

__all__ = [
    "BasicTextNormalizer",
    "EnglishNumberNormalizer",
    "EnglishSpellingNormalizer",
    "EnglishTextNormalizer",
    "remove_symbols",
    "remove_symbols_and_diacritics",
]

_WHITESPACE = re.compile(r"\s+")
# "[inaudible]", "<noise>" (any of "<[" opens, any of ">]" closes) and "(laughs)" are annotations, not speech.
_BRACKETED = re.compile(r"[<\[][^>\]]*[>\]]")
_PARENTHESISED = re.compile(r"\([^)]+\)")


def _remove_annotations(text: str) -> str:
    return _PARENTHESISED.sub("", _BRACKETED.sub("", text))


# ---------------------------------------------------------------------------------------------------------------------
# Symbols and diacritics

# Letters that NFKD does not split into a base letter plus combining marks, spelled the way English spells them.
# Like the reference, capital thorn becomes lower-case "th".
_LETTERS_WITHOUT_DECOMPOSITION = {
    "œ": "oe",
    "Œ": "OE",
    "ø": "o",
    "Ø": "O",
    "æ": "ae",
    "Æ": "AE",
    "ß": "ss",
    "ẞ": "SS",
    "đ": "d",
    "Đ": "D",
    "ð": "d",
    "Ð": "D",
    "þ": "th",
    "Þ": "th",
    "ł": "l",
    "Ł": "L",
}


def _is_mark_symbol_or_punctuation(char: str) -> bool:
    return unicodedata.category(char)[0] in "MSP"


def _without_diacritic(char: str, keep: str) -> str:
    if char in keep:
        return char
    if char in _LETTERS_WITHOUT_DECOMPOSITION:
        return _LETTERS_WITHOUT_DECOMPOSITION[char]
    if unicodedata.category(char) == "Mn":  # the accent NFKD split off its letter
        return ""
    return " " if _is_mark_symbol_or_punctuation(char) else char


def remove_symbols_and_diacritics(text: str, keep: str = "") -> str:
    """Strip accents ("é" -> "e", "ø" -> "o") and turn other marks, symbols and punctuation into spaces.

    Characters in ``keep`` pass through untouched (the English normaliser keeps ``.%$¢€£`` for its numbers).
    """
    return "".join(_without_diacritic(char, keep) for char in unicodedata.normalize("NFKD", text))


def remove_symbols(text: str) -> str:
    """Turn marks, symbols and punctuation into spaces, keeping accented letters whole (NFKC)."""
    return "".join(
        " " if _is_mark_symbol_or_punctuation(char) else char for char in unicodedata.normalize("NFKC", text)
    )


def _grapheme_splitter() -> Callable[[str], list[str]]:
    """Split text into user-perceived letters (Unicode extended grapheme clusters, UAX #29).

    The standard library has no grapheme segmentation (``unicodedata`` lacks the Grapheme_Cluster_Break
    property), so this needs the ``regex`` package's ``\\X``, as the reference does. It is imported only
    here, for ``split_letters=True``, so that everything else works without it.
    """
    try:
        import regex
    except ImportError as error:
        raise ImportError(
            "BasicTextNormalizer(split_letters=True) needs the 'regex' package: pip install regex"
        ) from error
    return regex.compile(r"\X", regex.UNICODE).findall


class BasicTextNormalizer:
    """Language-neutral normaliser for multilingual WER.

    ``remove_diacritics`` also strips accents; ``split_letters`` puts a space between all letters, for
    languages written without spaces between words (Chinese, Japanese, Thai, ...), where WER becomes CER.
    """

    def __init__(self, remove_diacritics: bool = False, split_letters: bool = False) -> None:
        self.remove_diacritics = remove_diacritics
        self.split_letters = split_letters
        self._split_graphemes = _grapheme_splitter() if split_letters else None

    def __call__(self, text: str) -> str:
        text = _remove_annotations(text.lower())
        text = remove_symbols_and_diacritics(text) if self.remove_diacritics else remove_symbols(text)
        text = text.lower()  # NFKC/NFKD can produce capitals again (e.g. "ℌ" -> "H")
        if self._split_graphemes is not None:
            text = " ".join(self._split_graphemes(text))
        return _WHITESPACE.sub(" ", text)


# ---------------------------------------------------------------------------------------------------------------------
# Numbers

_ZEROS = frozenset({"o", "oh", "zero"})
# fmt: off
_ONES_NAMES = [
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
]
_THOUSANDS_NAMES = [
    "thousand", "million", "billion", "trillion", "quadrillion", "quintillion",
    "sextillion", "septillion", "octillion", "nonillion", "decillion",
]
# fmt: on
_ONES = {name: value for value, name in enumerate(_ONES_NAMES, start=1)}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_MULTIPLIERS = {"hundred": 100, **{name: 1000**power for power, name in enumerate(_THOUSANDS_NAMES, start=1)}}

_IRREGULAR_ORDINALS = {
    "zeroth": (0, "th"),
    "first": (1, "st"),
    "second": (2, "nd"),
    "third": (3, "rd"),
    "fifth": (5, "th"),
    "twelfth": (12, "th"),
}


def _regular_ordinal(name: str) -> str:
    # Like the reference, this gives "nineth" (so "ninth" stays a word).
    return name + ("h" if name.endswith("t") else "th")


# Number words that end the number they complete, with the suffix they keep: "sixes" -> "6s", "fourth" -> "4th".
_ONES_SUFFIXED = {
    **{("sixes" if name == "six" else name + "s"): (value, "s") for name, value in _ONES.items()},
    **_IRREGULAR_ORDINALS,
    **{
        _regular_ordinal(name): (value, "th")
        for name, value in _ONES.items()
        if value > 3 and value not in (5, 12)  # the others have irregular ordinals
    },
}
_TENS_SUFFIXED = {
    **{name.replace("y", "ies"): (value, "s") for name, value in _TENS.items()},
    **{name.replace("y", "ieth"): (value, "th") for name, value in _TENS.items()},
}
_MULTIPLIERS_SUFFIXED = {
    **{name + "s": (value, "s") for name, value in _MULTIPLIERS.items()},
    **{name + "th": (value, "th") for name, value in _MULTIPLIERS.items()},
}

# "minus five" -> "-5": a sign word is written in front of the number that follows it.
_SIGNS = {"minus": "-", "negative": "-", "plus": "+", "positive": "+"}
# "five dollars" -> "$5": a currency word is written in front of the number that precedes it.
_CURRENCIES = {
    "pound": "£",
    "pounds": "£",
    "euro": "€",
    "euros": "€",
    "dollar": "$",
    "dollars": "$",
    "cent": "¢",
    "cents": "¢",
}
_PREFIX_SYMBOLS = frozenset(_SIGNS.values()) | frozenset(_CURRENCIES.values())
_CONNECTIVES = frozenset({"and", "double", "triple", "point", "per", "percent"})

_NUMBER_WORDS = frozenset().union(
    _ZEROS,
    _ONES,
    _ONES_SUFFIXED,
    _TENS,
    _TENS_SUFFIXED,
    _MULTIPLIERS,
    _MULTIPLIERS_SUFFIXED,
    _SIGNS,
    _CURRENCIES,
    _CONNECTIVES,
)
_DECIMAL_WORDS = frozenset().union(_ZEROS, _ONES, _TENS)  # the words that can follow "point"

_NUMERAL = re.compile(r"\d+(?:\.\d+)?")


def _is_numeral(word: str | None) -> bool:
    return word is not None and _NUMERAL.fullmatch(word) is not None


def _can_continue_number(word: str | None) -> bool:
    return word in _NUMBER_WORDS or _is_numeral(word)


def _digit_string(value: int | str | None) -> str:
    """The number read so far, for appending digits to; like the reference, an integer 0 counts as nothing."""
    return str(value or "")


class _NumberReader:
    """One left-to-right pass over the words of a text, turning spelled-out numbers into digits.

    ``value`` is the number being read: an ``int`` while it can still be combined arithmetically ("twenty" +
    "five"), a ``str`` once it is a digit sequence ("one oh one", "3.14"). ``prefix`` is a sign or currency symbol
    to write in front of the next item emitted.
    """

    def __init__(self) -> None:
        self.words: list[str] = []
        self.value: int | str | None = None
        self.prefix: str | None = None

    def read(self, words: list[str]) -> list[str]:
        consumed_next = False
        for i, word in enumerate(words):
            if consumed_next:
                consumed_next = False
                continue
            previous = words[i - 1] if i > 0 else None
            following = words[i + 1] if i + 1 < len(words) else None
            consumed_next = self._read_word(previous, word, following)
        self._flush()
        return self.words

    def _emit(self, item: int | str) -> None:
        self.words.append(f"{self.prefix or ''}{item}")
        self.value = None
        self.prefix = None

    def _flush(self) -> None:
        if self.value is not None:
            self._emit(self.value)

    def _read_word(self, previous: str | None, word: str, following: str | None) -> bool:
        """Handle one word; returns True when ``following`` was consumed with it ("per cent", "double five")."""
        symbol = word[0] if word[0] in _PREFIX_SYMBOLS else None
        digits = word[1:] if symbol else word
        if _is_numeral(digits):
            self._read_numeral(symbol, digits)
        elif word not in _NUMBER_WORDS:
            self._flush()
            self._emit(word)
        elif word in _ZEROS:
            self.value = _digit_string(self.value) + "0"
        elif word in _ONES or word in _ONES_SUFFIXED:
            number, suffix = (_ONES[word], "") if word in _ONES else _ONES_SUFFIXED[word]
            self.value = self._add_ones(previous, number)
            if suffix:
                self._emit(f"{self.value}{suffix}")
        elif word in _TENS or word in _TENS_SUFFIXED:
            number, suffix = (_TENS[word], "") if word in _TENS else _TENS_SUFFIXED[word]
            self.value = self._add_tens(number)
            if suffix:
                self._emit(f"{self.value}{suffix}")
        elif word in _MULTIPLIERS or word in _MULTIPLIERS_SUFFIXED:
            number, suffix = (_MULTIPLIERS[word], "") if word in _MULTIPLIERS else _MULTIPLIERS_SUFFIXED[word]
            self.value = self._multiply(number)
            if suffix:
                self._emit(f"{self.value}{suffix}")
        elif word in _SIGNS:
            self._flush()
            if _can_continue_number(following):
                self.prefix = _SIGNS[word]
            else:
                self._emit(word)
        elif word in _CURRENCIES:
            if self.value is None:
                self._emit(word)
            else:
                self.prefix = _CURRENCIES[word]
                self._emit(self.value)
        else:
            return self._read_connective(previous, word, following)
        return False

    def _read_numeral(self, symbol: str | None, digits: str) -> None:
        if isinstance(self.value, str) and self.value.endswith("."):  # the digits after "point"
            self.value += digits
            return
        self._flush()
        if symbol is not None:
            self.prefix = symbol
        number = Fraction(digits)
        self.value = number.numerator if number.denominator == 1 else digits

    def _add_ones(self, previous: str | None, ones: int) -> int | str:
        """Fill a free place ("twenty five" -> 25, "hundred twelve" -> 112), else append ("five five" -> "55")."""
        value = self.value
        if value is None:
            return ones
        if isinstance(value, str) or previous in _ONES:
            if previous in _TENS and ones < 10:  # "one oh twenty five": the 5 takes the place of twenty's 0
                return str(value)[:-1] + str(ones)
            return f"{value}{ones}"
        empty_place = 10 if ones < 10 else 100
        return value + ones if value % empty_place == 0 else f"{value}{ones}"

    def _add_tens(self, tens: int) -> int | str:
        """Add tens after hundreds ("hundred twenty" -> 120), else append ("nineteen ninety" -> "1990")."""
        value = self.value
        if value is None:
            return tens
        if isinstance(value, int) and value % 100 == 0:
            return value + tens
        return f"{value}{tens}"

    def _multiply(self, multiplier: int) -> int | str:
        """Scale the number read so far: "two thousand five hundred" -> 2500, "1.5 million" -> 1500000.

        A digit string that cannot be scaled to a whole number ("1.2.3", "0.0001 hundred") is emitted as it
        stands and the multiplier starts a new number.
        """
        value = self.value
        if value is None:
            return multiplier
        if isinstance(value, int):  # only the last three digits are scaled: 2000 + "five hundred" -> 2500
            return value // 1000 * 1000 + value % 1000 * multiplier
        try:
            scaled = Fraction(value) * multiplier
        except ValueError:
            scaled = None
        if scaled is not None and scaled.denominator == 1:
            return scaled.numerator
        self._emit(value)
        return multiplier

    def _read_connective(self, previous: str | None, word: str, following: str | None) -> bool:
        """Read "and", "double", "triple", "point", "per" or "percent"; returns True when ``following`` was consumed."""
        if word == "percent":
            self._emit(word if self.value is None else f"{self.value}%")
        elif word == "per" and self.value is not None and following == "cent":
            self._emit(f"{self.value}%")
            return True
        elif word in ("double", "triple") and (following in _ONES or following in _ZEROS):
            digit = str(_ONES.get(following, 0))
            self.value = _digit_string(self.value) + digit * (2 if word == "double" else 3)
            return True
        elif word == "point" and _can_continue_number(following):
            if following in _DECIMAL_WORDS or _is_numeral(following):
                self.value = _digit_string(self.value) + "."
            # else, like the reference, drop "point" before a number word that cannot follow it ("point hundred")
        elif word == "and" and previous in _MULTIPLIERS and _can_continue_number(following):
            pass  # "hundred and five" -> 105
        else:
            self._flush()
            self._emit(word)
        return False


_AND_A_HALF = re.compile(r"\band\s+a\s+half\b")
_LETTER_THEN_DIGIT = re.compile(r"([a-z])([0-9])")
_DIGIT_THEN_LETTER = re.compile(r"([0-9])([a-z])")
_DETACHED_SUFFIX = re.compile(r"([0-9])\s+(st|nd|rd|th|s)\b")
_AMOUNT_AND_CENTS = re.compile(r"([$£€])([0-9]+) (?:and )?¢([0-9]{1,2})\b")
# Like the reference, the character between "0" and the cents may be any character, not only ".".
_ZERO_AMOUNT_WITH_CENTS = re.compile(r"[$£€]0.([0-9]{1,2})\b")
_LONE_ONE = re.compile(r"\b1(s?)\b")


def _expand_halves(text: str) -> str:
    """Read "two and a half" as "two point five" (also after "hundred" etc.); other "and a half"s are kept.

    Like the reference, blank pieces around "and a half" are dropped together with the phrase that follows them.
    """
    pieces = _AND_A_HALF.split(text)
    kept = []
    for i, piece in enumerate(pieces):
        if not piece.strip():
            continue
        kept.append(piece)
        if i < len(pieces) - 1:
            last_word = piece.split()[-1]
            kept.append("point five" if last_word in _DECIMAL_WORDS or last_word in _MULTIPLIERS else "and a half")
    return " ".join(kept)


class EnglishNumberNormalizer:
    """Write spelled-out English numbers in digits.

    "twenty five" -> "25", "one hundred and two" -> "102", "one oh one" -> "101", "two point five" -> "2.5",
    "twenty second" -> "22nd", "$20 million" -> "$20000000", "five dollars and seven cents" -> "$5.07",
    "3 per cent" -> "3%"; suffixes stay ("1960s", "32nd"). 1 and 1s are written "one" and "ones", for readability.
    """

    def __call__(self, text: str) -> str:
        text = _expand_halves(text)
        text = _LETTER_THEN_DIGIT.sub(r"\1 \2", text)  # "covid19" -> "covid 19"
        text = _DIGIT_THEN_LETTER.sub(r"\1 \2", text)
        text = _DETACHED_SUFFIX.sub(r"\1\2", text)  # ...but "21 st" -> "21st"
        text = " ".join(_NumberReader().read(text.split()))
        text = _AMOUNT_AND_CENTS.sub(lambda m: f"{m[1]}{m[2]}.{int(m[3]):02d}", text)  # "$2 and ¢7" -> "$2.07"
        text = _ZERO_AMOUNT_WITH_CENTS.sub(lambda m: f"¢{int(m[1])}", text)  # "$0.07" -> "¢7"
        return _LONE_ONE.sub(r"one\1", text)


class EnglishSpellingNormalizer:
    """British to American spelling, word by word ("colour" -> "color"), from a tokenizer's normalizer.json."""

    def __init__(self, english_spelling_mapping: Mapping[str, str] | None) -> None:
        self.mapping: Mapping[str, str] = english_spelling_mapping or {}

    def __call__(self, text: str) -> str:
        return " ".join(self.mapping.get(word, word) for word in text.split())


# ---------------------------------------------------------------------------------------------------------------------
# English

_FILLERS = re.compile(r"\b(?:hmm|mm|mhm|mmm|uh|um)\b")
_SPACE_BEFORE_APOSTROPHE = re.compile(r"\s+'")

_INFORMAL_WORDS = {
    "won't": "will not",
    "can't": "can not",
    "let's": "let us",
    "ain't": "aint",
    "y'all": "you all",
    "wanna": "want to",
    "gotta": "got to",
    "gonna": "going to",
    "i'ma": "i am going to",
    "imma": "i am going to",
    "woulda": "would have",
    "coulda": "could have",
    "shoulda": "should have",
    "ma'am": "madam",
}
_TITLES = {
    "mr": "mister",
    "mrs": "missus",
    "st": "saint",
    "dr": "doctor",
    "prof": "professor",
    "capt": "captain",
    "gov": "governor",
    "ald": "alderman",
    "gen": "general",
    "sen": "senator",
    "rep": "representative",
    "pres": "president",
    "rev": "reverend",
    "hon": "honorable",
    "asst": "assistant",
    "assoc": "associate",
    "lt": "lieutenant",
    "col": "colonel",
    "jr": "junior",
    "sr": "senior",
    "esq": "esquire",
}
# Word endings, most specific first: "'s been" is "has been", any other "'s" is "is". ("'s done" is ambiguous.)
_CONTRACTED_ENDINGS = {
    "'d been": " had been",
    "'s been": " has been",
    "'d gone": " had gone",
    "'s gone": " has gone",
    "'d done": " had done",
    "'s got": " has got",
    "n't": " not",
    "'re": " are",
    "'s": " is",
    "'d": " would",
    "'ll": " will",
    "'t": " not",
    "'ve": " have",
    "'m": " am",
}
# Applied one after the other, in this order. A title keeps a space after it, so "mr.5" stays two words.
_EXPANSIONS = [
    *((re.compile(rf"\b{re.escape(word)}\b"), expansion) for word, expansion in _INFORMAL_WORDS.items()),
    *((re.compile(rf"\b{title}\b"), f"{expansion} ") for title, expansion in _TITLES.items()),
    *((re.compile(rf"{re.escape(ending)}\b"), expansion) for ending, expansion in _CONTRACTED_ENDINGS.items()),
]

_THOUSANDS_COMMA = re.compile(r"(\d),(\d)")
# A period not followed by a digit ends a sentence or an abbreviation (like the reference, this consumes the next
# character, so only the first of ".." becomes a space).
_NON_DECIMAL_PERIOD = re.compile(r"\.([^0-9]|$)")
_NUMBER_SYMBOLS = ".%$¢€£"
_STRAY_PREFIX_SYMBOL = re.compile(r"[.$¢€£]([^0-9])")
_STRAY_PERCENT = re.compile(r"([^0-9])%")


class EnglishTextNormalizer:
    """Whisper's English normaliser for WER: the basic clean-up plus contractions, titles, fillers ("um", "hmm"),
    numbers in digits and American spelling.

    ``english_spelling_mapping`` is a tokenizer's normalizer.json (British -> American); ``None`` skips that step.
    """

    def __init__(self, english_spelling_mapping: Mapping[str, str] | None = None) -> None:
        self.standardize_numbers = EnglishNumberNormalizer()
        self.standardize_spellings = EnglishSpellingNormalizer(english_spelling_mapping)

    def __call__(self, text: str) -> str:
        text = _remove_annotations(text.lower())
        text = _FILLERS.sub("", text)
        text = _SPACE_BEFORE_APOSTROPHE.sub("'", text)  # "don 't" -> "don't"
        for pattern, expansion in _EXPANSIONS:
            text = pattern.sub(expansion, text)
        text = _THOUSANDS_COMMA.sub(r"\1\2", text)
        text = _NON_DECIMAL_PERIOD.sub(r" \1", text)
        text = remove_symbols_and_diacritics(text, keep=_NUMBER_SYMBOLS)
        text = self.standardize_numbers(text)
        text = self.standardize_spellings(text)
        # The number symbols were kept for the number normaliser; drop those that ended up next to no number.
        text = _STRAY_PREFIX_SYMBOL.sub(r" \1", text)
        text = _STRAY_PERCENT.sub(r"\1 ", text)
        return _WHITESPACE.sub(" ", text)
