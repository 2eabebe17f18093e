"""LocalAgreement-2 (whisper_streaming's policy): commit the words two consecutive hypotheses agree on.

A word is committed once the newest hypothesis and the one before it begin with the same uncommitted words
up to it: a word two passes over growing audio agree on seldom changes later. A pass that transcribes the
buffer afresh says again what was already committed (the buffer still holds its audio): :func:`drop_committed`
finds where the new words begin.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Sequence
from dataclasses import dataclass

OVERLAP_SLACK = 0.1  # s: a new word starting this little before the last commit may still be new
NGRAM_WINDOW = 1.0  # s: only a hypothesis starting this close to the last commit is checked for repeats
MAX_NGRAM = 5  # the longest run of committed words looked for again at a hypothesis' start
MATCH_TAIL = 30  # committed words matched against a new hypothesis
# With the committed text as prompt and a buffer that begins in silence, Whisper may say the prompt's last
# sentence again; aligned to audio that does not hold it, most of its words last no time at all. The committed
# text's last words said again, this many or more and timed so, are such an echo wherever they lie.
ECHO_WORDS = 4
NO_TIME = 0.02  # s: one alignment frame


@dataclass(frozen=True)
class StreamWord:
    """A word of a stream: where it is spoken (seconds from the start of the stream) and its text, with
    the leading space Whisper gives it."""

    start: float
    end: float
    text: str

    @property
    def key(self) -> str:
        return word_key(self.text)


def word_key(text: str) -> str:
    """What two hypotheses must share for a word to agree: case and punctuation aside, as Whisper often adds
    a comma or capital once it hears what follows. Punctuation alone has an empty key: it is no word."""
    return text.strip().lower().strip(string.punctuation + "“”‘’¿¡")


def drop_committed(words: Sequence[StreamWord], committed: Sequence[StreamWord]) -> list[StreamWord]:
    """The words of a new hypothesis that are not already committed.

    The buffer still holds the audio of the last committed words, so a hypothesis usually says them again,
    timed a little differently each pass. Where the committed tail is found again in the hypothesis (its
    last word matched within a second of where it was committed, or an echo: at least ``ECHO_WORDS`` of
    its words, most of them timed to no time, wherever they lie), what follows the match is new; without
    a match, the words that start after the last commit (less a little slack) are, less a leading run of
    up to five words that repeats the committed tail.
    """
    if not committed:
        return list(words)
    last = committed[-1].end
    tail = [word.key for word in committed[-MATCH_TAIL:]]
    keys = [word.key for word in words]
    matcher = difflib.SequenceMatcher(None, tail, keys, autojunk=False)
    ends = [
        block.b + block.size
        for block in matcher.get_matching_blocks()
        if block.size
        and block.a + block.size == len(tail)
        and (
            words[block.b + block.size - 1].start < last + NGRAM_WINDOW
            or (block.size >= ECHO_WORDS and timed_to_nothing(words[block.b : block.b + block.size]))
        )
    ]
    if ends:
        return list(words[ends[-1] :])
    fresh = [word for word in words if word.start > last - OVERLAP_SLACK]
    if fresh and abs(fresh[0].start - last) < NGRAM_WINDOW:
        tail = tail[-MAX_NGRAM:]
        for size in range(min(len(tail), len(fresh), MAX_NGRAM), 0, -1):
            if tail[-size:] == [word.key for word in fresh[:size]]:
                return fresh[size:]
    return fresh


def timed_to_nothing(words: Sequence[StreamWord]) -> bool:
    """Whether most of ``words`` last less than one alignment frame: text the audio does not hold (a
    phrase said twice in speech takes time both times)."""
    return 2 * sum(word.end - word.start < NO_TIME for word in words) >= len(words)


def in_order(words: Sequence[StreamWord], committed: Sequence[StreamWord]) -> list[StreamWord]:
    """``words`` to commit after ``committed``, re-timed where alignment jitter would have one start before
    the word before it ends: committed times only move forward."""
    placed: list[StreamWord] = []
    last = committed[-1].end if committed else 0.0
    for word in words:
        start = max(word.start, last)
        placed.append(StreamWord(start, max(word.end, start), word.text))
        last = placed[-1].end
    return placed


class LocalAgreement:
    """The hypotheses of one stream and what they agreed on; :meth:`insert` a pass, :meth:`flush` commits."""

    def __init__(self) -> None:
        self.committed: list[StreamWord] = []
        self.previous: list[StreamWord] = []  # the last hypothesis, less what is committed
        self.current: list[StreamWord] = []

    def insert(self, words: Sequence[StreamWord]) -> None:
        """A new hypothesis' words that are not committed yet (file-time words)."""
        self.current = list(words)

    def flush(self) -> list[StreamWord]:
        """Commit the longest common prefix of the last two hypotheses; return the newly committed words."""
        agreed = []
        for old, new in zip(self.previous, self.current, strict=False):
            if old.key != new.key:
                break
            agreed.append(new)
        self.previous = self.current[len(agreed) :]
        agreed = in_order(agreed, self.committed)
        self.committed.extend(agreed)
        self.current = []
        return agreed

    def pending(self) -> list[StreamWord]:
        """The newest hypothesis' words that are not committed yet (shown greyed by a live client)."""
        return list(self.previous)

    def commit_all(self) -> list[StreamWord]:
        """At the end of an utterance or stream: commit what is pending."""
        words, self.previous = in_order(self.previous, self.committed), []
        self.committed.extend(words)
        return words
