"""Whisper's logit rules, written once and branch-free over :class:`~whisper_core.decoding.ops.ArrayOps`.

The rules are those of openai-whisper (``SuppressBlank``, ``SuppressTokens``,
``ApplyTimestampRules``), which transformers 4.57's PyTorch processors also follow:

* ``suppress_tokens`` are never produced;
* ``begin_suppress_tokens`` (a blank, ``<|endoftext|>``) are not produced as the first token;
* with timestamps: ``<|notimestamps|>`` is never produced; timestamps come in pairs (after a
  pair, text must follow; after a lone timestamp, another timestamp or ``<|endoftext|>``);
  timestamps never decrease and a segment never has zero length (no endless ``<|0.00|>``);
  the first token is a timestamp no later than ``max_initial_timestamp_index``; and a
  timestamp is forced when the total probability of all timestamps beats every text token.
* ours, where a row is given an earliest end (:meth:`LogitRules.masks`): once it has said something, a
  segment it closes before that time is followed by another timestamp (the next segment opens, nothing
  else), and a segment it opens before that time says something before the row may end (one opened
  later may end the row: the model found nothing more to say; forced to, it invents and loops). A clip
  that voice activity detection cut at a silence holds speech to its end, but in a full window the model
  often closes a segment seconds before that and stops, leaving the last words for another window (a
  batched piece's leftover: a whole encoder pass); held to the clip's end, it transcribes them in this
  one. A row that has said nothing may still end at once (``<|0.00|><|endoftext|>``): a clip VAD took for
  speech that is not comes back empty instead of being filled with invented text.

The token history is a fixed-size buffer ``tokens [batch, capacity]`` of which the first
``length`` positions are valid and generation started at ``begin``, so the same code runs in
eager PyTorch and inside compiled JAX/TF loops (where ``length`` is a traced scalar).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ops import ArrayOps


@dataclass(frozen=True)
class LogitRules:
    """The decoding rules of one model and one ``generate`` call; build once, apply every step."""

    vocab_size: int
    eos_token_id: int
    no_timestamps_token_id: int
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()
    return_timestamps: bool = False
    max_initial_timestamp_index: int | None = 50
    # Derived vocabulary masks ([1, vocab] bool) and, with timestamps, keys ([1, vocab] int), computed once.
    _masks: dict[str, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vocab = np.arange(self.vocab_size)[None, :]
        timestamp_begin = self.timestamp_begin
        always = np.isin(vocab, [t for t in self.suppress_tokens if 0 <= t < self.vocab_size])
        if self.return_timestamps:
            always |= vocab == self.no_timestamps_token_id
        at_begin = np.isin(vocab, [t for t in self.begin_suppress_tokens if 0 <= t < self.vocab_size])
        masks = {"always": always, "at_begin": at_begin}
        if self.return_timestamps:
            is_timestamp = vocab >= timestamp_begin
            initial_forbidden = ~is_timestamp
            if self.max_initial_timestamp_index is not None:
                initial_forbidden |= vocab > timestamp_begin + self.max_initial_timestamp_index
            masks["at_begin"] = at_begin | initial_forbidden
            # Per-row rules become one comparison each over the vocabulary: a token is forbidden where its
            # key is below the row's cut (:meth:`_cuts`). Text (and the specials before the timestamps) keep
            # their ids in ``text_key``; timestamps keep theirs in ``time_key``, where <|endoftext|> sits
            # just past the last timestamp; ``_BEYOND`` is above every cut.
            beyond = self.vocab_size + _BEYOND
            masks["text_key"] = np.where(is_timestamp, beyond, vocab)
            masks["time_key"] = np.where(
                is_timestamp, vocab, np.where(vocab == self.eos_token_id, self.vocab_size, beyond)
            )
        object.__setattr__(self, "_masks", masks)

    @property
    def timestamp_begin(self) -> int:
        """Id of ``<|0.00|>``, right after ``<|notimestamps|>`` in every Whisper vocabulary."""
        return self.no_timestamps_token_id + 1

    def masks(self, ops: ArrayOps, like: Any, end_floors: Any = None) -> dict[str, Any]:
        """The vocabulary masks as backend tensors; make them once per ``generate`` call. ``end_floors``
        ``[batch, 1]`` (a backend tensor, with timestamps): per row, the timestamp token id before which the
        transcript may not end (:attr:`GenerationPlan.end_floors`; 0 for none)."""
        masks = {name: ops.constant(mask, like) for name, mask in self._masks.items()}
        if end_floors is not None and self.return_timestamps:
            masks["end_floor"] = end_floors
        return masks

    def apply(
        self, ops: ArrayOps, logits: Any, tokens: Any, length: Any, begin: int, masks: dict[str, Any] | None = None
    ) -> Any:
        """Return ``logits [batch, vocab]`` with forbidden tokens set to ``-inf``.

        ``tokens [batch, capacity]``: the decoder input so far (prompt and prefix included);
        ``length``: how many positions of ``tokens`` are valid (int or scalar tensor);
        ``begin``: the position of the first generated token; ``masks``: from :meth:`masks`.
        """
        masks = masks if masks is not None else self.masks(ops, logits)
        neg_inf = ops.neg_inf(logits)
        generated = length - begin  # tokens produced so far (same for every row)
        forbidden = masks["always"] | ((generated == 0) & masks["at_begin"])  # [1, vocab]
        if self.return_timestamps:
            text_cut, time_cut = self._cuts(ops, masks, tokens, length, begin, generated)
            forbidden = forbidden | (masks["text_key"] < text_cut) | (masks["time_key"] < time_cut)
        logits = ops.where(forbidden, neg_inf, logits)
        if self.return_timestamps:
            logits = self._force_timestamp_when_likely(ops, masks, logits, neg_inf)
        return logits

    def _cuts(
        self, ops: ArrayOps, masks: dict[str, Any], tokens: Any, length: Any, begin: int, generated: Any
    ) -> tuple[Any, Any]:
        """The timestamp rules of each row as two cuts ``[batch, 1]``: tokens whose ``text_key`` is below the
        first, or whose ``time_key`` is below the second, are forbidden. The pairs rule (after a pair, text;
        after a lone timestamp, a timestamp or <|endoftext|>), no timestamp before the last one (+1 after a
        pair), and a held row's earliest end. Per-row cuts in place of per-row masks: PyTorch spent 2.0 ms a
        step on these rules at five rows, most of it combining ``[batch, 1]`` flags with ``[1, vocab]``
        masks."""
        timestamp_begin = self.timestamp_begin
        positions = ops.constant(np.arange(tokens.shape[-1])[None, :], tokens)  # [1, capacity]
        last = ops.sum(ops.where(positions == length - 1, tokens, 0))  # [batch, 1]
        penultimate = ops.sum(ops.where(positions == length - 2, tokens, 0))
        last_is_time = (generated >= 1) & (last >= timestamp_begin)
        lone_time = last_is_time & (generated >= 2) & (penultimate < timestamp_begin)  # ends an open segment
        pair_ended = last_is_time & ((generated < 2) | (penultimate >= timestamp_begin))
        times = (tokens >= timestamp_begin) & (positions >= begin) & (positions < length)  # [batch, capacity]
        any_time = ops.sum(ops.where(times, 1, 0)) > 0
        latest_position = ops.max(ops.where(times, positions, -1))
        latest_time = ops.sum(ops.where(positions == latest_position, tokens, 0))
        # After a lone timestamp the segment may close on the same time; otherwise time must advance.
        floor = ops.where(lone_time, latest_time, latest_time + 1)
        # After a pair no timestamp at all; else none below the floor; after a lone timestamp no text.
        time_cut = ops.where(pair_ended, self.vocab_size, ops.where(any_time, floor, 0))
        text_cut = ops.where(lone_time, self.eos_token_id, 0)
        if "end_floor" in masks:  # a held row: a segment closed before its earliest end is followed by another
            early = last < masks["end_floor"]
            opened_early = pair_ended & (generated >= 2) & early  # after text: the new segment says something
            time_cut = ops.where(opened_early, self.vocab_size + 1, time_cut)  # nor <|endoftext|>
            text_cut = ops.where(lone_time & early, timestamp_begin, text_cut)  # only a timestamp
        return text_cut, time_cut

    def _force_timestamp_when_likely(self, ops: ArrayOps, masks: dict[str, Any], logits: Any, neg_inf: Any) -> Any:
        """openai-whisper compares the log-probability of all timestamps together with the best text token's;
        both subtract the same normaliser, so the raw logits compare alike, over the vocabulary's two ends
        (timestamps are its tail) instead of a log-softmax and two masked copies of the whole of it (PyTorch,
        three rows: 0.56 ms a step for the masked log-sum-exp alone)."""
        timestamp_log_mass = ops.logsumexp(logits[..., self.timestamp_begin :])
        best_text_logit = ops.max(logits[..., : self.timestamp_begin])
        text_cut = ops.where(timestamp_log_mass > best_text_logit, self.timestamp_begin, 0)
        return ops.where(masks["text_key"] < text_cut, neg_inf, logits)


_BEYOND = 2  # a key this far past the vocabulary is above every cut (the largest is vocab_size + 1)
