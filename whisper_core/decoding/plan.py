"""Everything a ``generate`` call decides before the first decoder step, written once for every backend.

Resolving the options against the generation config, picking (or detecting) each row's language,
building prompt + prefix rows, left-padding them, bounding ``max_new_tokens`` and building the
logit rules are the same in PyTorch, TensorFlow and JAX; only the decoding loop differs. The shared
``generate`` (:mod:`.frontend`) calls :func:`plan_generation` with a callback that detects languages
when some row needs it, then the backend runs its loop on the plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .prefix import PrefixIds, decoder_prefix, languages_per_row, per_row, prompt_tokens
from .rules import LogitRules
from .segments import TIME_PRECISION, Segment, split_segments

# Widths the prefix rows are left-padded to with ``bucket_prefix``: a prompt grows window by window
# over a long file (up to half the text context, 224 tokens, plus the start sequence), and a compiled
# decoding loop is built per prefix width, so rounding the width up to one of these bounds the
# compilations per file whatever its length. Each program costs a process 0.5-1.2 s in JAX (its cache
# read) and 4-7 s in TensorFlow (traced, then converted to XLA); padding costs a JAX call (base, one row,
# 2026-12-06) 104 ms from 8 to 256 tokens, 55 ms from 128. So: a window without a prompt (a file's first,
# a short file, a batched piece), a streaming pass's prompt (its last 200 characters of text), and a
# long file's growing prompt. With the widths before (8, 32, 64, 128, 256) a 127 s file ran three greedy
# programs (8, 128, 256), two now.
PREFIX_BUCKETS = (8, 64, 256)
# Greedy and sampling loops that take their limit of new tokens as an input (TF, JAX) size their
# buffers in steps of this many tokens: over a long file a window may generate 224 tokens, or 448 less
# its prompt and prefix (221 once the prompt is full), which would otherwise be two compiled programs.
ROOM_STEP = 32


@dataclass
class WhisperGenerateOutput:
    """``generate(..., return_dict_in_generate=True)`` in every backend: ids with their prefix, and what was
    asked for (tensors of the backend's framework)."""

    sequences: Any  # [batch, prefix + generated]
    scores: Any = None  # per step, processed logits [batch, vocab]; beam search: sequence scores [batch]
    no_speech_probs: Any = None  # [batch]
    languages: list[str] | None = None  # the language of each row (given or detected)
    segments: list[list[Segment]] | None = None  # per row, with return_timestamps and return_segments
    sequences_scores: Any = None  # beam search with output_scores: [batch], as transformers names it
    # With output_logprobs (ours; greedy and sampling): [batch, generated steps], each generated token's
    # log-probability under its step's processed logits, what transformers' compute_transition_scores(...,
    # normalize_logits=True) derives from the scores, computed in the loop so no vocabulary-wide step is kept.
    logprobs: Any = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass(frozen=True)
class LoopSpec:
    """Everything static about one compiled decoding loop: hashable, so it keys the cache of compiled
    loops (``jax.jit`` / ``tf.function``) beside the input shapes."""

    rules: LogitRules
    max_new_tokens: int  # room in the buffers; a loop given its limit as an input stops there
    eos: int
    pad: int
    no_speech_token: int
    # A sampling loop's top_k (0: every token), None for argmax. The temperature is an input of the loop
    # (GenerationPlan.temperature), so one compiled loop serves every temperature of a fallback.
    sampling: int | None
    want_scores: bool
    num_beams: int
    want_logprobs: bool
    length_penalty: float
    # Rows per input of a greedy or sampling loop (row_copies): the loop runs the prefix once per input
    # and decodes that many rows from it; a beam loop does the same with num_beams.
    copies: int = 1


@dataclass(frozen=True)
class GenerationPlan:
    """The resolved decoding of one batch: rows, rules and search settings."""

    ids: PrefixIds
    rules: LogitRules
    prefixes: list[list[int]]  # [batch, begin]: prompt + prefix per row, left-padded with ``pad``
    padding: list[int]  # pad tokens in front of each row
    sot_positions: list[int]  # where <|startoftranscript|> sits in each row (its logits give no-speech)
    language_tokens: list[int | None]  # each row's language token (None on English-only models)
    max_new_tokens: int
    eos: int
    pad: int
    num_beams: int
    length_penalty: float
    sampling: tuple[float, int] | None  # (temperature, top_k), or None for argmax
    output_scores: bool
    return_dict: bool
    return_segments: bool
    output_logprobs: bool = False
    # per row, the timestamp token id before which its transcript may not end (0: anywhere; see
    # plan_generation's earliest_end): an input of the greedy and sampling loops
    end_floors: tuple[int, ...] = ()

    @property
    def begin(self) -> int:
        """Position of the first generated token (the width of the left-padded prefix rows)."""
        return len(self.prefixes[0])

    @property
    def capacity(self) -> int:
        """Length of the token buffer: prefix plus every token that may be generated."""
        return self.begin + self.max_new_tokens

    def loop_spec(self, copies: int = 1, room_step: int = 1) -> LoopSpec:
        """The static part of this plan, for compiled loops (``copies``: see :func:`row_copies`). A loop
        that stops at ``max_new_tokens`` given at run time asks for its room rounded up to ``room_step``
        (:data:`ROOM_STEP`), so nearby limits share one program."""
        return LoopSpec(
            rules=self.rules,
            max_new_tokens=-(-self.max_new_tokens // room_step) * room_step,
            eos=self.eos,
            pad=self.pad,
            no_speech_token=self.ids.no_speech_token_id,
            sampling=None if self.sampling is None else self.sampling[1],
            want_scores=self.output_scores,
            num_beams=self.num_beams,
            want_logprobs=self.output_logprobs,
            length_penalty=self.length_penalty,
            copies=copies,
        )

    def row_copies(self, same_states: Callable[[int, int], bool]) -> int:
        """:func:`row_copies` of this plan's rows: consecutive rows decode one input only where their prefixes,
        padding, earliest ends and encoder states (``same_states``) agree."""
        return row_copies(self.prefixes, list(zip(self.padding, self.end_floors, strict=True)), same_states)

    @property
    def temperature(self) -> float:
        """The sampling temperature, the loop's runtime input (1.0 for argmax, where it is not read)."""
        return 1.0 if self.sampling is None else self.sampling[0]

    def languages(self) -> list[str] | None:
        """Each row's language code, or ``None`` for English-only models."""
        if not self.ids.is_multilingual:
            return None
        return [self.ids.language_of_token(token) for token in self.language_tokens]

    def output(
        self, sequences: Any, host_sequences: np.ndarray, scores: Any, no_speech: Any, logprobs: Any = None
    ) -> WhisperGenerateOutput:
        """What ``generate`` returns with ``return_dict_in_generate``: ``sequences`` in the backend's
        framework (``host_sequences`` the same as NumPy), scores and log-probabilities as asked, and the
        per-row extras."""
        scores = scores if self.output_scores else None
        return WhisperGenerateOutput(
            sequences,
            scores,
            no_speech,
            self.languages(),
            self.segments(host_sequences),
            scores if self.num_beams > 1 else None,
            logprobs if self.output_logprobs else None,
        )

    def segments(self, sequences: np.ndarray) -> list[list[Segment]] | None:
        """Timestamp segments of ``sequences [batch, length]`` (prefix included) when they were asked for."""
        if not self.return_segments:
            return None
        return [
            split_segments(row, self.rules.timestamp_begin, self.eos) for row in sequences[:, self.begin :].tolist()
        ]


def plan_generation(
    config: Any,
    model_config: Any,
    batch: int,
    detect_languages: Callable[[], np.ndarray],
    *,
    language: str | Sequence[str | None] | None = None,
    task: str | None = None,
    return_timestamps: bool | None = None,
    prompt_ids: Any = None,
    text_prefix_ids: Any = None,
    max_new_tokens: int | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    output_scores: bool | None = None,
    return_dict_in_generate: bool | None = None,
    return_segments: bool = False,
    max_length: int | None = None,
    attention_mask: Any = None,
    bucket_prefix: bool = False,
    prefix_width: int = 0,
    output_logprobs: bool = False,
    earliest_end: float | Sequence[float | None] | None = None,
    **unsupported: Any,
) -> GenerationPlan:
    """Resolve one ``generate`` call. Explicit arguments win over ``config`` (a GenerationConfig);
    ``detect_languages()`` returns ``[batch]`` indices into ``lang_to_id`` and is called only when a
    row of a multilingual model has no language given.

    ``max_length`` bounds the whole output (prompt and prefix included) when ``max_new_tokens`` is not
    given. ``attention_mask`` (the processor's, over the audio frames) is accepted as transformers
    accepts it and unused: short-form features are always padded to 30 s, which the encoder sees whole.

    ``text_prefix_ids`` (ours): text tokens each row's transcript is forced to begin with (as ``prompt_ids``:
    one list for every row or one per row); decoding continues after them and returns them in ``sequences``
    but gives them no scores. A streaming decoder passes the words it already committed, so a pass decodes
    only what is new. The transcript has then begun, so the begin-suppressed tokens (a blank,
    ``<|endoftext|>``) are allowed at once in every row of the batch, and no timestamps are decoded: the
    forced text carries none, and the timestamp rules would force one first.

    ``bucket_prefix`` (ours, not transformers'): left-pad the prefix rows further, to the next width in
    :data:`PREFIX_BUCKETS`, so that compiled loops (TF, JAX) see a bounded set of shapes over a long
    file. The padding is masked and each row counts its positions from its first real token, so the
    tokens are those of the unpadded rows; the returned sequences carry the extra padding in front.
    ``prefix_width`` (ours, with ``bucket_prefix``): pad to the bucket of at least this many tokens. A caller
    whose later calls will carry longer prompts (a long file's windows, conditioned on the text before)
    asks for their width from the first call, so that every call runs one program.

    ``output_logprobs`` (ours, greedy and sampling): the output's ``logprobs`` ``[batch, generated steps]``
    hold each generated token's log-probability under its step's processed logits, computed in the loop.
    A transcription needs only these (its average log-probability check); ``output_scores`` keeps every
    step's logits over the vocabulary, which compiled loops hold in one buffer of ``max_new_tokens`` steps
    (base, 5 rows, 224 tokens: 232 MB) and hand back step by step.

    ``earliest_end`` (ours, greedy and sampling with timestamps): seconds into the window, one for every row
    or one (or ``None``) per row, before which a row that has said something may not end: a segment it
    closes earlier is followed by the next one's timestamp, and a segment it opens earlier says something
    (see :mod:`.rules`), so the model transcribes speech it was given instead of leaving it undecoded; a row that
    says nothing may still end at once. For audio known to be speech up to a point (a clip voice activity
    detection cut at a silence); never for audio that may end in silence, where the model would have to
    invent text. Times past the window hold a row to its last timestamp.
    """
    del attention_mask  # see the docstring
    if unsupported:
        raise TypeError(f"generate() got unsupported arguments: {sorted(unsupported)}")
    num_beams = config.num_beams if num_beams is None else num_beams
    length_penalty = config.length_penalty if length_penalty is None else length_penalty
    do_sample = config.do_sample if do_sample is None else do_sample
    temperature = config.temperature if temperature is None else temperature
    top_k = config.top_k if top_k is None else top_k
    return_timestamps = bool(config.return_timestamps if return_timestamps is None else return_timestamps)
    output_scores = bool(config.output_scores if output_scores is None else output_scores)
    return_dict = config.return_dict_in_generate if return_dict_in_generate is None else return_dict_in_generate
    if return_segments and not return_timestamps:
        raise ValueError("return_segments needs return_timestamps=True")
    text_prefixes = [p or [] for p in prompts_per_row(text_prefix_ids, batch)]
    if any(text_prefixes) and return_timestamps:
        raise ValueError("text_prefix_ids needs return_timestamps=False: the forced text carries no timestamps")
    if num_beams > 1 and do_sample:
        raise ValueError("beam search with sampling is not supported: pass do_sample=False or num_beams=1")
    if num_beams > 1 and output_logprobs:
        raise ValueError("output_logprobs is for greedy and sampling; beam search has output_scores' sequence scores")
    earliest_ends = per_row(earliest_end, batch, "values of earliest_end", (int, float, np.number))
    if any(earliest_ends) and (num_beams > 1 or not return_timestamps):
        raise ValueError("earliest_end is for greedy and sampling with return_timestamps=True")
    ids = PrefixIds.from_generation_config(config)

    rows = languages_per_row(language if language is not None else config.language, batch)
    language_tokens = [None if row is None else ids.language_token(row) for row in rows]
    if ids.is_multilingual and None in language_tokens:
        lang_ids = list(ids.lang_to_id.values())
        detected = np.asarray(detect_languages()).reshape(-1)
        language_tokens = [
            token if token is not None else lang_ids[int(found)]
            for token, found in zip(language_tokens, detected, strict=True)
        ]
    prompts = [prompt_tokens(ids, p, model_config.max_target_positions) for p in prompts_per_row(prompt_ids, batch)]
    task = task if task is not None else config.task
    rows = [
        prompt + decoder_prefix(ids, token, task, return_timestamps) + text_prefix
        for prompt, token, text_prefix in zip(prompts, language_tokens, text_prefixes, strict=True)
    ]
    pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    begin = max(len(row) for row in rows)  # the widest real prefix: what bounds the room left to generate
    limit = model_config.max_target_positions - begin
    if max_new_tokens is None and max_length is not None:
        max_new_tokens = max_length - begin
    if max_new_tokens is None:
        max_new_tokens = min(config.max_new_tokens or config.max_length - begin, limit)
    elif max_new_tokens > limit:
        raise ValueError(
            f"max_new_tokens ({max_new_tokens}) + the prompt and prefix ({begin}) exceed max_target_positions "
            f"({model_config.max_target_positions})"
        )
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    prefixes, padding = left_pad(rows, pad, prefix_bucket(max(begin, prefix_width)) if bucket_prefix else begin)
    rules = LogitRules(
        vocab_size=model_config.vocab_size,
        eos_token_id=config.eos_token_id,
        no_timestamps_token_id=ids.no_timestamps_token_id,
        suppress_tokens=tuple(config.suppress_tokens or ()),
        begin_suppress_tokens=() if any(text_prefixes) else tuple(config.begin_suppress_tokens or ()),
        return_timestamps=return_timestamps,
        max_initial_timestamp_index=config.max_initial_timestamp_index,
    )
    return GenerationPlan(
        ids=ids,
        rules=rules,
        prefixes=prefixes,
        padding=padding,
        sot_positions=[pad_count + len(prompt) for pad_count, prompt in zip(padding, prompts, strict=True)],
        language_tokens=language_tokens,
        max_new_tokens=max_new_tokens,
        eos=config.eos_token_id,
        pad=pad,
        num_beams=num_beams,
        length_penalty=float(length_penalty),
        sampling=(float(temperature), int(top_k or 0)) if do_sample and temperature > 0 else None,
        output_scores=output_scores,
        return_dict=bool(return_dict or return_segments or output_logprobs),
        return_segments=return_segments,
        output_logprobs=output_logprobs,
        end_floors=tuple(_timestamp_token(rules, seconds) for seconds in earliest_ends),
    )


def _timestamp_token(rules: LogitRules, seconds: float | None) -> int:
    """The id of the timestamp token at ``seconds`` (rounded down, and at most the vocabulary's last, the end
    of the window); 0, which no row is held to, for None or no time."""
    if seconds is None:
        return 0
    if not math.isfinite(seconds):
        raise ValueError(f"earliest_end must be a finite time in seconds, got {seconds}")
    if seconds <= 0:
        return 0
    return min(rules.timestamp_begin + int(seconds / TIME_PRECISION), rules.vocab_size - 1)


def row_copies(
    prefixes: Sequence[Sequence[int]], row_keys: Sequence[Any], same_states: Callable[[int, int], bool]
) -> int:
    """How many consecutive rows decode each input: ``n`` when the rows come in whole blocks of ``n`` with
    the same prefix, keys (their padding, and anything else a loop takes per input) and encoder states
    (``same_states(i, j)``, asked only once the rest agrees: it reads the device) -- the ``best_of`` draws
    of one window -- else 1. A loop then runs the prefix once per input (a 200-token prompt over 8
    identical rows was 8 times the work) and its copies decode from that one cache."""
    rows = len(prefixes)

    def same(i: int, j: int) -> bool:
        return prefixes[i] == prefixes[j] and row_keys[i] == row_keys[j] and same_states(i, j)

    copies = 1
    while copies < rows and same(copies, 0):
        copies += 1
    if copies == 1 or rows % copies:
        return 1
    return copies if all(same(row, row - row % copies) for row in range(copies, rows)) else 1


def prompts_per_row(prompt_ids: Any, batch: int) -> list[list[int] | None]:
    """One prompt (a token list or ``None``) per row, from a shared prompt or a per-row list.

    A prompt is anything array-like (list, NumPy, or a framework tensor on the host); a 2-D one
    ``[batch, length]`` gives each row its own prompt."""
    if prompt_ids is None:
        return [None] * batch
    if hasattr(prompt_ids, "detach"):  # a torch tensor, possibly on an accelerator
        prompt_ids = prompt_ids.detach().cpu()
    if not isinstance(prompt_ids, list | tuple) and np.ndim(prompt_ids) == 2:  # [batch, length]: one per row
        prompt_ids = list(np.asarray(prompt_ids))
    if isinstance(prompt_ids, list | tuple) and prompt_ids and not isinstance(prompt_ids[0], int | np.integer):
        if len(prompt_ids) != batch:
            raise ValueError(f"got {len(prompt_ids)} prompts for a batch of {batch}")
        return [None if p is None else _token_list(p) for p in prompt_ids]
    return [_token_list(prompt_ids)] * batch


def _token_list(prompt_ids: Any) -> list[int]:
    if hasattr(prompt_ids, "detach"):  # a torch tensor, possibly on an accelerator
        prompt_ids = prompt_ids.detach().cpu()
    return [int(t) for t in np.asarray(prompt_ids).reshape(-1)]


def prefix_bucket(width: int) -> int:
    """The smallest of :data:`PREFIX_BUCKETS` that holds ``width`` tokens (``width`` itself beyond them)."""
    return next((bucket for bucket in PREFIX_BUCKETS if bucket >= width), width)


def left_pad(rows: list[list[int]], pad: int, width: int | None = None) -> tuple[list[list[int]], list[int]]:
    """Left-pad token rows to ``width`` (default: the longest row); also return how much padding each row got."""
    width = max(len(row) for row in rows) if width is None else width
    return [[pad] * (width - len(row)) + row for row in rows], [width - len(row) for row in rows]
