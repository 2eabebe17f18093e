"""Word error rate as Whisper's papers report it: after Whisper's text normalizer, over a whole set."""

from __future__ import annotations

from collections.abc import Sequence

from ..normalizers import BasicTextNormalizer, EnglishTextNormalizer


def _edits(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, deletions, insertions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, word in enumerate(reference, start=1):
        current = [i]
        for j, guess in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != guess)))
        previous = current
    return previous[-1]


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str], language: str | None = "en") -> float:
    """Edits over reference words, summed over the set (not a mean of per-row rates); English text goes
    through the English normalizer (spellings, numbers), other languages through the basic one."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references for {len(hypotheses)} hypotheses")
    normalize = EnglishTextNormalizer() if language in (None, "en", "english") else BasicTextNormalizer()
    edits = words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        expected, got = normalize(reference).split(), normalize(hypothesis).split()
        edits += _edits(expected, got)
        words += len(expected)
    return edits / max(words, 1)
