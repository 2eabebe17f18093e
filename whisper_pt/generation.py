"""PyTorch ``generate`` and ``detect_language`` for Whisper, driven by the shared decoding rules.

The rules (suppression, timestamp rules, prefixes, language tokens) come from
:mod:`whisper_core.decoding`; this module only supplies the torch array ops and the loop:
encode once, feed the prefix, then one token per step through the self-attention KV cache
(cross-attention keys/values are computed on the first step and reused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from whisper_core.decoding import (
    LogitRules,
    PrefixIds,
    Segment,
    beam,
    decoder_prefix,
    languages_per_row,
    prompt_tokens,
    split_segments,
)


class TorchOps:
    """:class:`whisper_core.decoding.ArrayOps` over torch tensors."""

    def constant(self, values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(values, device=like.device)

    def where(self, condition: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        return torch.where(condition, x, y)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=-1, keepdim=True)

    def max(self, x: torch.Tensor) -> torch.Tensor:
        return x.max(dim=-1, keepdim=True).values

    def logsumexp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(x, dim=-1, keepdim=True)

    def log_softmax(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(x, dim=-1)

    def neg_inf(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(float("-inf"), dtype=like.dtype, device=like.device)

    # -- beam search -----------------------------------------------------------------------
    def top_k(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.topk(x, k, dim=-1)

    def gather_beams(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        return x[rows, indices]

    def concat(self, tensors: list[torch.Tensor], axis: int) -> torch.Tensor:
        return torch.cat(tensors, dim=axis)

    def set_column(self, x: torch.Tensor, column: torch.Tensor, index: int) -> torch.Tensor:
        x = x.clone()
        x[:, :, index] = column
        return x

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32)

    def reshape(self, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return x.reshape(shape)

    def min(self, x: torch.Tensor) -> torch.Tensor:
        return x.min(dim=-1, keepdim=True).values

    def any(self, x: torch.Tensor) -> torch.Tensor:
        return x.any(dim=-1, keepdim=True)

    def all_true(self, x: torch.Tensor) -> bool:
        return bool(x.all())


@dataclass
class WhisperGenerateOutput:
    """``generate(..., return_dict_in_generate=True)``: ids with their prefix, and what was asked for."""

    sequences: torch.Tensor  # [batch, prefix + generated]
    scores: tuple[torch.Tensor, ...] | None = None  # per step, processed logits [batch, vocab]
    no_speech_probs: torch.Tensor | None = None  # [batch]
    languages: list[str] | None = None  # the language of each row (given or detected)
    segments: list[list[Segment]] | None = None  # per row, with return_timestamps and return_segments

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class WhisperGenerationMixin:
    """``generate`` and ``detect_language`` for :class:`~whisper_pt.modeling.WhisperForConditionalGeneration`."""

    @torch.no_grad()
    def detect_language(
        self, input_features: torch.Tensor | None = None, encoder_outputs: Any = None
    ) -> list[dict[str, float]]:
        """Per input, the probability of each language the model knows (``{"en": 0.97, ...}``)."""
        ids = PrefixIds.from_generation_config(self.generation_config)
        if not ids.is_multilingual:
            raise ValueError("this is an English-only model: it has no language tokens to detect")
        encoder_states = self._encoder_states(input_features, encoder_outputs)
        probabilities = self._language_probabilities(ids, encoder_states)
        codes = [token[2:-2] for token in ids.lang_to_id]
        return [dict(zip(codes, row.tolist(), strict=True)) for row in probabilities]

    @torch.inference_mode()
    def generate(
        self,
        input_features: torch.Tensor | None = None,
        generation_config: Any = None,
        *,
        encoder_outputs: Any = None,
        language: str | list[str | None] | None = None,
        task: str | None = None,
        return_timestamps: bool | None = None,
        prompt_ids: torch.Tensor | list[int] | list[list[int] | None] | None = None,
        max_new_tokens: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        num_beams: int | None = None,
        length_penalty: float | None = None,
        output_scores: bool | None = None,
        return_dict_in_generate: bool | None = None,
        return_segments: bool = False,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> torch.Tensor | WhisperGenerateOutput:
        """Token ids ``[batch, prefix + generated]`` (greedy by default), padded with ``<|endoftext|>``.

        ``language``: a code, name or ``<|xx|>`` token, one per row, or ``None`` to detect it
        (multilingual models). ``task``: "transcribe" (default) or "translate". ``prompt_ids``: one
        ``<|startofprev|>`` prompt for every row, or a list with one (or ``None``) per row; rows are
        then left-padded and their positions counted from their first real token.
        """
        config = generation_config or self.generation_config
        if kwargs:
            raise TypeError(f"generate() got unsupported arguments: {sorted(kwargs)}")
        num_beams = num_beams if num_beams is not None else config.num_beams
        length_penalty = config.length_penalty if length_penalty is None else length_penalty
        do_sample = config.do_sample if do_sample is None else do_sample
        temperature = config.temperature if temperature is None else temperature
        top_k = config.top_k if top_k is None else top_k
        return_timestamps = bool(config.return_timestamps if return_timestamps is None else return_timestamps)
        output_scores = config.output_scores if output_scores is None else output_scores
        return_dict = config.return_dict_in_generate if return_dict_in_generate is None else return_dict_in_generate
        return_dict = return_dict or return_segments
        ids = PrefixIds.from_generation_config(config)

        encoder_states = self._encoder_states(input_features, encoder_outputs)
        batch = encoder_states.shape[0]
        rows = languages_per_row(language if language is not None else config.language, batch)
        language_tokens = [None if row is None else ids.language_token(row) for row in rows]
        if ids.is_multilingual and None in language_tokens:
            detected = self._language_probabilities(ids, encoder_states).argmax(dim=-1)
            lang_ids = list(ids.lang_to_id.values())
            language_tokens = [
                tok if tok is not None else lang_ids[int(d)] for tok, d in zip(language_tokens, detected, strict=True)
            ]
        prompts = [prompt_tokens(ids, p, self.config.max_target_positions) for p in _prompts_per_row(prompt_ids, batch)]
        task = task if task is not None else config.task
        rows = [
            prompt + decoder_prefix(ids, token, task, return_timestamps)
            for prompt, token in zip(prompts, language_tokens, strict=True)
        ]
        pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
        prefixes, padding = _left_pad(rows, pad)
        begin = len(prefixes[0])
        limit = self.config.max_target_positions - begin
        if max_new_tokens is None:
            max_new_tokens = min(config.max_new_tokens or config.max_length - begin, limit)
        elif max_new_tokens > limit:
            raise ValueError(
                f"max_new_tokens ({max_new_tokens}) + the prompt and prefix ({begin}) exceed max_target_positions "
                f"({self.config.max_target_positions})"
            )
        rules = LogitRules(
            vocab_size=self.config.vocab_size,
            eos_token_id=config.eos_token_id,
            no_timestamps_token_id=ids.no_timestamps_token_id,
            suppress_tokens=tuple(config.suppress_tokens or ()),
            begin_suppress_tokens=tuple(config.begin_suppress_tokens or ()),
            return_timestamps=return_timestamps,
            max_initial_timestamp_index=config.max_initial_timestamp_index,
        )
        prefix = torch.tensor(prefixes, device=encoder_states.device)
        padding = torch.tensor(padding, device=encoder_states.device)
        no_speech = _NoSpeech(
            padding + torch.tensor([len(p) for p in prompts], device=padding.device), ids.no_speech_token_id
        )
        if num_beams > 1:
            sequences, scores = self._beam_search(
                encoder_states,
                prefix,
                padding,
                rules,
                max_new_tokens,
                num_beams,
                length_penalty,
                config.eos_token_id,
                pad,
                no_speech,
            )
        else:
            sequences, scores = self._greedy_or_sample(
                encoder_states,
                prefix,
                padding,
                rules,
                max_new_tokens,
                eos=config.eos_token_id,
                pad=pad,
                sampling=(temperature, top_k) if do_sample else None,
                want_scores=output_scores,
                generator=generator,
                no_speech=no_speech,
            )
        if not return_dict:
            return sequences
        languages = [ids.language_of_token(t) for t in language_tokens] if ids.is_multilingual else None
        segments = None
        if return_segments:
            if not return_timestamps:
                raise ValueError("return_segments needs return_timestamps=True")
            segments = [
                split_segments(row, rules.timestamp_begin, config.eos_token_id) for row in sequences[:, begin:].tolist()
            ]
        return WhisperGenerateOutput(
            sequences, scores if output_scores else None, no_speech.probabilities, languages, segments
        )

    # -- pieces ----------------------------------------------------------------------------
    def _encoder_states(self, input_features: torch.Tensor | None, encoder_outputs: Any) -> torch.Tensor:
        if encoder_outputs is not None:
            return (
                encoder_outputs[0] if isinstance(encoder_outputs, tuple | list) else encoder_outputs.last_hidden_state
            )
        if input_features is None:
            raise ValueError("give input_features (or encoder_outputs)")
        input_features = input_features.to(device=self.device, dtype=self.dtype)
        return self.model.encoder(input_features).last_hidden_state

    def _language_probabilities(self, ids: PrefixIds, encoder_states: torch.Tensor) -> torch.Tensor:
        """``[batch, languages]`` softmax over the language tokens after ``<|startoftranscript|>``."""
        start = torch.full((encoder_states.shape[0], 1), ids.decoder_start_token_id, device=encoder_states.device)
        logits = self(encoder_outputs=(encoder_states,), decoder_input_ids=start, use_cache=False).logits[:, -1]
        language_ids = torch.tensor(list(ids.lang_to_id.values()), device=logits.device)
        return torch.softmax(logits.float()[:, language_ids], dim=-1)

    def _decoder_step(
        self, encoder_states: torch.Tensor, step_input: torch.Tensor, cache: Any, positions: _LeftPadding, length: int
    ) -> Any:
        """One cached decoder pass over ``step_input [rows, new]``, the last of which sits at ``length - 1``."""
        start = length - step_input.shape[1]
        return self(
            encoder_outputs=(encoder_states,),
            decoder_input_ids=step_input,
            past_key_values=cache,
            use_cache=True,
            **positions.step(start, step_input.shape[1]),
        )

    def _greedy_or_sample(
        self,
        encoder_states: torch.Tensor,
        prefix: torch.Tensor,
        padding: torch.Tensor,
        rules: LogitRules,
        max_new_tokens: int,
        *,
        eos: int,
        pad: int,
        sampling: tuple[float, int] | None,
        want_scores: bool,
        generator: torch.Generator | None,
        no_speech: _NoSpeech,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        ops = TorchOps()
        masks = rules.masks(ops, encoder_states)
        batch, begin = prefix.shape
        tokens = torch.full((batch, begin + max_new_tokens), pad, dtype=torch.long, device=prefix.device)
        tokens[:, :begin] = prefix
        finished = torch.zeros(batch, dtype=torch.bool, device=prefix.device)
        cache, step_input, scores = None, prefix, []
        length = begin
        positions = _LeftPadding(padding, begin + max_new_tokens)
        for _ in range(max_new_tokens):
            out = self._decoder_step(encoder_states, step_input, cache, positions, length)
            cache = out.past_key_values
            if length == begin:
                no_speech.record(out.logits)
            logits = rules.apply(ops, out.logits[:, -1].float(), tokens, length, begin, masks)
            if want_scores:
                scores.append(logits)
            next_tokens = torch.where(finished, pad, _pick(logits, sampling, generator))
            tokens[:, length] = next_tokens
            length += 1
            finished |= next_tokens == eos
            if bool(finished.all()):
                break
            step_input = next_tokens[:, None]
        return tokens[:, :length], tuple(scores)

    def _beam_search(
        self,
        encoder_states: torch.Tensor,
        prefix: torch.Tensor,
        padding: torch.Tensor,
        rules: LogitRules,
        max_new_tokens: int,
        num_beams: int,
        length_penalty: float,
        eos: int,
        pad: int,
        no_speech: _NoSpeech,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Beam search with transformers' semantics (the bookkeeping lives in whisper_core.decoding.beam)."""
        ops = TorchOps()
        masks = rules.masks(ops, encoder_states)
        batch, begin = prefix.shape
        capacity = begin + max_new_tokens
        states = encoder_states.repeat_interleave(num_beams, dim=0)  # [batch * beams, frames, d]
        state = beam.initial_state(ops, prefix.cpu().numpy(), num_beams, capacity, pad, encoder_states)
        offsets = torch.arange(batch, device=prefix.device)[:, None] * num_beams
        cache, step_input, length = None, prefix.repeat_interleave(num_beams, dim=0), begin
        positions = _LeftPadding(padding.repeat_interleave(num_beams, dim=0), capacity)
        while True:
            out = self._decoder_step(states, step_input, cache, positions, length)
            if length == begin:
                no_speech.record(out.logits[::num_beams])
            flat_running = state.running.reshape(batch * num_beams, capacity)
            log_probs = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            log_probs = rules.apply(ops, log_probs, flat_running, length, begin, masks)
            state = beam.step(
                ops,
                state,
                log_probs.reshape(batch, num_beams, -1),
                length=length,
                begin=begin,
                capacity=capacity,
                eos=eos,
                length_penalty=length_penalty,
            )
            length += 1
            if not beam.should_continue(ops, state):
                break
            order = (state.source_beam + offsets).reshape(-1)  # [batch * beams] rows of the old cache
            cache = tuple(tuple(tensor[order] for tensor in layer) for layer in out.past_key_values)
            step_input = state.running.reshape(batch * num_beams, capacity)[:, length - 1 : length]
        sequences, scores, longest = beam.best_sequences(ops, state)
        return sequences[:, :longest], scores


class _NoSpeech:
    """Keeps the probability of the no-speech token right after ``<|startoftranscript|>`` from the first step."""

    def __init__(self, positions: torch.Tensor, token: int) -> None:
        self.positions, self.token = positions, token  # [batch] where <|startoftranscript|> sits in each row
        self.probabilities: torch.Tensor | None = None

    def record(self, prefix_logits: torch.Tensor) -> None:
        """``prefix_logits [batch, prefix, vocab]``: the logits of the first decoder step."""
        rows = torch.arange(prefix_logits.shape[0], device=prefix_logits.device)
        self.probabilities = torch.softmax(prefix_logits[rows, self.positions].float(), dim=-1)[:, self.token]


class _LeftPadding:
    """Attention mask and position ids for left-padded rows (nothing extra when no row is padded)."""

    def __init__(self, padding: torch.Tensor, capacity: int) -> None:
        self.padding = padding  # [batch] number of pad tokens in front of each row
        self.active = bool((padding > 0).any())
        columns = torch.arange(capacity, device=padding.device)[None, :]
        self.mask = (columns >= padding[:, None]).long()  # [batch, capacity]: 1 on real tokens
        self.positions = (columns - padding[:, None]).clamp(min=0)  # each row counts from its first real token

    def step(self, start: int, count: int) -> dict[str, torch.Tensor]:
        """Keyword arguments for a forward pass over positions ``start .. start + count``."""
        if not self.active:
            return {}
        return {
            "decoder_attention_mask": self.mask[:, : start + count],
            "decoder_position_ids": self.positions[:, start : start + count],
        }


def _pick(logits: torch.Tensor, sampling: tuple[float, int] | None, generator: torch.Generator | None) -> torch.Tensor:
    """Greedy argmax, or a sample at ``temperature`` from the ``top_k`` most likely tokens."""
    if sampling is None:
        return logits.argmax(dim=-1)
    temperature, top_k = sampling
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[:, 0]


def _prompts_per_row(prompt_ids: Any, batch: int) -> list[list[int] | None]:
    """One prompt (a token list or ``None``) per row, from a shared prompt or a per-row list."""
    if prompt_ids is None:
        return [None] * batch
    if isinstance(prompt_ids, list | tuple) and prompt_ids and not isinstance(prompt_ids[0], int | np.integer):
        if len(prompt_ids) != batch:
            raise ValueError(f"got {len(prompt_ids)} prompts for a batch of {batch}")
        return [None if p is None else _as_list(p) for p in prompt_ids]
    return [_as_list(prompt_ids)] * batch


def _as_list(prompt_ids: torch.Tensor | np.ndarray | list[int]) -> list[int]:
    if isinstance(prompt_ids, torch.Tensor):
        return prompt_ids.reshape(-1).tolist()
    return [int(t) for t in np.asarray(prompt_ids).reshape(-1)]


def _left_pad(rows: list[list[int]], pad: int) -> tuple[list[list[int]], list[int]]:
    """Left-pad token rows to one length; also return how much padding each row got."""
    width = max(len(row) for row in rows)
    return [[pad] * (width - len(row)) + row for row in rows], [width - len(row) for row in rows]
