"""Decode a batch of 30 s windows with openai-whisper's temperature fallback.

Each window is decoded greedily first; a result that looks like a failure (too repetitive: the
zlib compression ratio of its text is above a threshold; or too unsure: its average log-probability
is below one; or caught in a loop, one phrase repeated back to back) is decoded again at the next
temperature, by sampling. A window that the model
thinks is silent (high no-speech probability and low log-probability) is accepted as it is, since
the caller skips it. When every temperature fails, the result with the best average
log-probability among those that do not repeat themselves is kept (faster-whisper's choice). Only the rows that still fail are decoded again, so a batch shrinks.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..decoding import sharing_prefix_passes
from .backends import Generated, ModelBackend
from .guards import has_repetition_loop

DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SAMPLE_LENGTH_DIVISOR = 2  # openai-whisper decodes at most n_text_ctx // 2 tokens per window


# How many windows a compiled backend decodes a batch of at most 8 as (row_bucket).
ROW_BUCKETS = (1, 2, 3, 4, 6, 8)


def row_bucket(rows: int) -> int:
    """How many windows a compiled backend decodes ``rows`` windows as (each with its ``best_of`` draws when
    sampling): the next of :data:`ROW_BUCKETS`, then the next multiple of 8, so that fallback's shrinking
    batches and a last short batch reuse a few programs. Every padded window costs a row of the decoding
    loop (its cross-attention reads a whole window's keys and values at every step), so three windows
    are not padded to four: base, three VAD pieces of the benchmarks' 127 s file, TF 6.35-6.59 -> 5.86-6.33 s
    a batched call (four alternated pairs, 2026-12-07); 1-8 windows cost 6% more rows on average, against
    19% with powers of two."""
    return next(bucket for bucket in ROW_BUCKETS if bucket >= rows) if rows <= 8 else -(-rows // 8) * 8


@dataclass(frozen=True)
class FallbackOptions:
    """The thresholds of openai-whisper's ``transcribe`` (None switches a check off)."""

    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    best_of: int = 1  # samples drawn per window at temperature > 0; the most likely one is kept
    loop_check: bool = True  # ours: a phrase repeated back to back also fails (see guards.has_repetition_loop)


@dataclass(frozen=True)
class WindowResult:
    """A window's accepted decoding and the figures the fallback judged it by."""

    generated: Generated
    text: str
    temperature: float
    compression_ratio: float
    looping: bool = False  # its text tokens hold a repetition loop

    @property
    def tokens(self) -> tuple[int, ...]:
        return self.generated.tokens

    @property
    def avg_logprob(self) -> float:
        return self.generated.avg_logprob

    @property
    def no_speech_prob(self) -> float:
        return self.generated.no_speech_prob


def compression_ratio(text: str) -> float:
    """UTF-8 bytes over zlib-compressed bytes: repetitive (looping) text compresses well."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


def needs_fallback(result: WindowResult, options: FallbackOptions) -> bool:
    """openai-whisper's rule: too repetitive or too unsure, unless the window looks silent; and ours: a loop."""
    too_unsure = options.logprob_threshold is not None and result.avg_logprob < options.logprob_threshold
    silent = (
        options.no_speech_threshold is not None and result.no_speech_prob > options.no_speech_threshold and too_unsure
    )
    return (is_repetitive(result, options) or too_unsure) and not silent


def is_repetitive(result: WindowResult, options: FallbackOptions) -> bool:
    """Its text compresses too well, or (with ``loop_check``) repeats a phrase back to back."""
    over_ratio = (
        options.compression_ratio_threshold is not None
        and result.compression_ratio > options.compression_ratio_threshold
    )
    return over_ratio or (options.loop_check and result.looping)


def best_failure(results: Sequence[WindowResult], options: FallbackOptions) -> WindowResult:
    """When every temperature failed: the most likely result that does not repeat itself (faster-whisper's
    choice; a loop is often the most confident), or the most likely of all when every one does."""
    sane = [result for result in results if not is_repetitive(result, options)]
    return max(sane or results, key=lambda result: result.avg_logprob)


def is_silent(result: WindowResult, options: FallbackOptions) -> bool:
    """openai-whisper's no-speech skip: the window is likely silence, and not confident enough to keep anyway."""
    if options.no_speech_threshold is None or result.no_speech_prob <= options.no_speech_threshold:
        return False
    return options.logprob_threshold is None or result.avg_logprob <= options.logprob_threshold


def start_sequence(backend: ModelBackend, timestamps: bool = True) -> int:
    """How many tokens follow the prompt before the text: <|startoftranscript|> [<|lang|> <|task|>]
    [<|notimestamps|>]."""
    return (3 if backend.generation_config.is_multilingual else 1) + (not timestamps)


def max_new_tokens(
    backend: ModelBackend,
    prompts: Sequence[Sequence[int] | None],
    timestamps: bool = True,
    text_prefixes: Sequence[Sequence[int]] | None = None,
    limit: int | None = None,
) -> int:
    """openai-whisper's sample length (half the text context), within the room the longest prefix leaves and,
    on an eager backend, within ``limit`` rounded up to a power of two. A compiled backend keeps the sample
    length: each new length would be one more decoding program."""
    context = backend.config.max_target_positions
    text_prefixes = text_prefixes or [()] * len(prompts)
    longest = max(len(prompt or ()) + len(text) for prompt, text in zip(prompts, text_prefixes, strict=True))
    longest += start_sequence(backend, timestamps)
    bound = context // SAMPLE_LENGTH_DIVISOR
    if limit is not None and not backend.bucket_prefix:
        bound = min(bound, 1 << max(limit - 1, 0).bit_length())
    return min(bound, context - longest)


class WindowDecoder:
    """Decodes batches of windows with fallback; keeps a sampling seed that advances with every draw. With
    ``timestamps=False`` it decodes text alone (``<|notimestamps|>``), which lets a row's transcript be
    forced to begin with given text."""

    def __init__(
        self,
        backend: ModelBackend,
        tokenizer: Any,
        options: FallbackOptions,
        *,
        task: str | None = None,
        seed: int = 0,
        timestamps: bool = True,
        longest_prompt: int = 0,
    ) -> None:
        self.backend, self.tokenizer, self.options = backend, tokenizer, options
        self.task, self.seed, self.timestamps = task, seed, timestamps
        # the widest prefix any window will carry: a compiled backend pads every window to it, so a long file's
        # growing prompts run one program from the first window on (its first window has no prompt yet)
        self.prefix_width = longest_prompt + start_sequence(backend, timestamps) if longest_prompt else 0
        self.states: Any = None  # the encoder states of the last decoded batch
        self._known: tuple[np.ndarray, Any] | None = None  # features already encoded, and their states

    def know(self, features: np.ndarray, states: Any) -> None:
        """The encoder ``states`` of ``features``, computed already (language detection encodes each file's first
        30 s, which is the first window of a file that long): if the next batch to decode is those features, it
        is not encoded again (base: 0.5-0.7 s a file)."""
        self._known = (features, states)

    def decode(
        self,
        features: np.ndarray,
        prompts: Sequence[Sequence[int] | None],
        languages: Sequence[str | None],
        text_prefixes: Sequence[Sequence[int]] | None = None,
        max_tokens: int | None = None,
        earliest_ends: Sequence[float | None] | None = None,
    ) -> list[WindowResult]:
        """``features [b, mels, 3000]``, one ``<|startofprev|>`` prompt (or None) and one language (None on
        English-only models) per row -> one result per row. ``text_prefixes`` (without timestamps): per row,
        text its transcript begins with; a result holds what was decoded after it. ``max_tokens`` bounds what
        a row may decode on an eager backend (see :func:`max_new_tokens`): a repetition loop then costs less.
        ``earliest_ends``: per row, the time (s) into its window before which its transcript may not end (or
        None), for windows known to hold speech up to there (``generate(earliest_end=...)``)."""
        text_prefixes = [list(prefix) for prefix in text_prefixes] if text_prefixes else [[] for _ in prompts]
        ends = list(earliest_ends) if earliest_ends else [None] * len(prompts)
        accepted: list[WindowResult | None] = [None] * len(prompts)
        tried: list[list[WindowResult]] = [[] for _ in prompts]
        pending = list(range(len(prompts)))
        known, self._known = self._known, None
        if known is not None and known[0].shape == features.shape and np.array_equal(known[0], features):
            states = known[1]
        else:
            states = self.backend.encode(features)  # once: every temperature and draw decodes these
        self.states = states  # and the word-timing pass may reuse them (rows as in ``features``)
        with sharing_prefix_passes():  # and, where a backend can, one prefix pass
            for temperature in self.options.temperatures:
                rows = ([prompts[row] for row in pending], [languages[row] for row in pending])
                texts, row_ends = [text_prefixes[row] for row in pending], [ends[row] for row in pending]
                results = self._decode_at(states, pending, *rows, texts, temperature, max_tokens, row_ends)
                for row, result in zip(pending, results, strict=True):
                    tried[row].append(result)
                    if not needs_fallback(result, self.options):
                        accepted[row] = result
                pending = [row for row in pending if accepted[row] is None]
                if not pending:
                    break
        for row in pending:  # every temperature failed
            accepted[row] = best_failure(tried[row], self.options)
        return accepted  # type: ignore[return-value]  # every row is filled above

    def row_states(self, row: int) -> Any:
        """The encoder states of one row of the last decoded batch (for its word-timing pass)."""
        return self.backend.take_rows(self.states, [row])

    def _decode_at(
        self,
        states: Any,
        pending: list[int],
        prompts: list[Sequence[int] | None],
        languages: list[str | None],
        text_prefixes: list[list[int]],
        temperature: float,
        max_tokens: int | None = None,
        earliest_ends: list[float | None] | None = None,
    ) -> list[WindowResult]:
        """Decode the ``pending`` rows of the encoder ``states`` at ``temperature`` (``best_of`` draws each
        when sampling); the most likely draw of each row."""
        draws = self.options.best_of if temperature > 0 else 1
        self.seed += temperature > 0
        ends = earliest_ends or [None] * len(pending)
        windows: tuple[list[Any], ...] = (list(pending), list(prompts), list(languages), list(text_prefixes), ends)
        if self.backend.bucket_prefix:  # pad with copies of the first window; their results are dropped
            extra = row_bucket(len(pending)) - len(pending)
            windows = tuple(column + column[:1] * extra for column in windows)
        # Each window's draws are consecutive copies of it, which the loops decode from one prefix pass
        # (row_copies); the windows, not the rows, are padded, so the copies stay whole blocks.
        rows, row_prompts, row_languages, row_texts, row_ends = (
            [x for x in column for _ in range(draws)] for column in windows
        )
        generated = self.backend.generate(
            self.backend.take_rows(states, rows),
            row_prompts,
            temperature=temperature,
            max_new_tokens=max_new_tokens(self.backend, prompts, self.timestamps, text_prefixes, max_tokens),
            language=row_languages,
            task=self.task,
            seed=self.seed,
            timestamps=self.timestamps,
            text_prefixes=row_texts if any(row_texts) else None,
            prefix_width=self.prefix_width,
            earliest_ends=row_ends if any(end is not None for end in row_ends) else None,
        )
        best = [max(generated[row * draws : (row + 1) * draws], key=_likelihood) for row in range(len(prompts))]
        return [self._result(candidate, temperature) for candidate in best]

    def _result(self, generated: Generated, temperature: float) -> WindowResult:
        text = self.tokenizer.decode(list(generated.tokens), skip_special_tokens=True)
        text_tokens = [token for token in generated.tokens if token < self.tokenizer.eos_token_id]
        looping = has_repetition_loop(text_tokens)
        return WindowResult(generated, text, temperature, compression_ratio(text.strip()), looping)


def _likelihood(generated: Generated) -> float:
    """openai-whisper's ranking of samples (no length penalty): log-probability per token."""
    return generated.sum_logprob / max(len(generated.tokens), 1)
