"""Whisper's language and task tables, the one place they are written down.

The order of ``LANGUAGES`` is the order of the language tokens in the vocabulary
(``<|en|>`` right after ``<|startoftranscript|>``); models trained before large-v3 know the
first 99, large-v3 adds Cantonese.
"""

from __future__ import annotations

LANGUAGES: dict[str, str] = {
    code: name.replace("_", " ")
    for code, name in (
        pair.split(":")
        for pair in [
            "en:english",
            "zh:chinese",
            "de:german",
            "es:spanish",
            "ru:russian",
            "ko:korean",
            "fr:french",
            "ja:japanese",
            "pt:portuguese",
            "tr:turkish",
            "pl:polish",
            "ca:catalan",
            "nl:dutch",
            "ar:arabic",
            "sv:swedish",
            "it:italian",
            "id:indonesian",
            "hi:hindi",
            "fi:finnish",
            "vi:vietnamese",
            "he:hebrew",
            "uk:ukrainian",
            "el:greek",
            "ms:malay",
            "cs:czech",
            "ro:romanian",
            "da:danish",
            "hu:hungarian",
            "ta:tamil",
            "no:norwegian",
            "th:thai",
            "ur:urdu",
            "hr:croatian",
            "bg:bulgarian",
            "lt:lithuanian",
            "la:latin",
            "mi:maori",
            "ml:malayalam",
            "cy:welsh",
            "sk:slovak",
            "te:telugu",
            "fa:persian",
            "lv:latvian",
            "bn:bengali",
            "sr:serbian",
            "az:azerbaijani",
            "sl:slovenian",
            "kn:kannada",
            "et:estonian",
            "mk:macedonian",
            "br:breton",
            "eu:basque",
            "is:icelandic",
            "hy:armenian",
            "ne:nepali",
            "mn:mongolian",
            "bs:bosnian",
            "kk:kazakh",
            "sq:albanian",
            "sw:swahili",
            "gl:galician",
            "mr:marathi",
            "pa:punjabi",
            "si:sinhala",
            "km:khmer",
            "sn:shona",
            "yo:yoruba",
            "so:somali",
            "af:afrikaans",
            "oc:occitan",
            "ka:georgian",
            "be:belarusian",
            "tg:tajik",
            "sd:sindhi",
            "gu:gujarati",
            "am:amharic",
            "yi:yiddish",
            "lo:lao",
            "uz:uzbek",
            "fo:faroese",
            "ht:haitian_creole",
            "ps:pashto",
            "tk:turkmen",
            "nn:nynorsk",
            "mt:maltese",
            "sa:sanskrit",
            "lb:luxembourgish",
            "my:myanmar",
            "bo:tibetan",
            "tl:tagalog",
            "mg:malagasy",
            "as:assamese",
            "tt:tatar",
            "haw:hawaiian",
            "ln:lingala",
            "ha:hausa",
            "ba:bashkir",
            "jw:javanese",
            "su:sundanese",
            "yue:cantonese",
        ]
    )
}

# Name (and common alternative name) -> code.
TO_LANGUAGE_CODE: dict[str, str] = {
    **{name: code for code, name in LANGUAGES.items()},
    "burmese": "my",
    "valencian": "ca",
    "flemish": "nl",
    "haitian": "ht",
    "letzeburgesch": "lb",
    "pushto": "ps",
    "panjabi": "pa",
    "moldavian": "ro",
    "moldovan": "ro",
    "sinhalese": "si",
    "castilian": "es",
    "mandarin": "zh",
}

TASKS: tuple[str, ...] = ("translate", "transcribe")


def language_code(language: str) -> str:
    """Return the code for a language given as a code, a name, an alias, or a token ``<|xx|>``.

    Raises ``ValueError`` listing the accepted forms when the language is unknown.
    """
    key = language.strip().lower()
    if key.startswith("<|") and key.endswith("|>"):
        key = key[2:-2]
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise ValueError(
        f"unknown language {language!r}: give a code ({', '.join(list(LANGUAGES)[:5])}, ...), "
        f"a name ({', '.join(list(TO_LANGUAGE_CODE)[:3])}, ...) or a token such as '<|en|>'"
    )


def check_task(task: str) -> str:
    """Return ``task`` if Whisper knows it, else raise ``ValueError``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: Whisper knows {TASKS}")
    return task
