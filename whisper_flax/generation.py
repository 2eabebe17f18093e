"""JAX ``generate`` and ``detect_language`` for Whisper, driven by the shared decoding rules.

The rules (suppression, timestamp rules, prefixes, language tokens) come from
:mod:`whisper_core.decoding`; this module supplies the jnp array ops and the loop. Unlike the
PyTorch loop, the whole greedy (or sampling) loop is one ``jax.jit`` function around a
``lax.while_loop`` over a preallocated token buffer and :class:`~whisper_flax.outputs.KVCache`:
the prefix is decoded once, then one token per iteration, with the sequence length a traced
scalar that the rules read. It compiles once per (batch, prefix length, ``max_new_tokens``,
rules) and is reused for every later call of the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from whisper_core.decoding import (
    LogitRules,
    PrefixIds,
    Segment,
    decoder_prefix,
    languages_per_row,
    prompt_tokens,
    split_segments,
)


class JaxOps:
    """:class:`whisper_core.decoding.ArrayOps` over jnp arrays (traceable: usable inside ``jax.jit``)."""

    def constant(self, values: np.ndarray, like: Any) -> jax.Array:
        return jnp.asarray(values)

    def where(self, condition: Any, x: Any, y: Any) -> jax.Array:
        return jnp.where(condition, x, y)

    def sum(self, x: jax.Array) -> jax.Array:
        return x.sum(axis=-1, keepdims=True)

    def max(self, x: jax.Array) -> jax.Array:
        return x.max(axis=-1, keepdims=True)

    def logsumexp(self, x: jax.Array) -> jax.Array:
        return jax.nn.logsumexp(x, axis=-1, keepdims=True)

    def log_softmax(self, x: jax.Array) -> jax.Array:
        return jax.nn.log_softmax(x, axis=-1)

    def neg_inf(self, like: jax.Array) -> jax.Array:
        return jnp.array(-jnp.inf, dtype=like.dtype)


@dataclass
class WhisperGenerateOutput:
    """``generate(..., return_dict_in_generate=True)``: ids with their prefix, and what was asked for."""

    sequences: jax.Array  # [batch, prefix + generated]
    scores: tuple[jax.Array, ...] | None = None  # per step, processed logits [batch, vocab]
    no_speech_probs: jax.Array | None = None  # [batch]
    languages: list[str] | None = None  # the language of each row (given or detected)
    segments: list[list[Segment]] | None = None  # per row, with return_timestamps and return_segments

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass(frozen=True)
class _LoopSpec:
    """Everything static about one compiled loop (the jit cache key beside the input shapes)."""

    rules: LogitRules
    max_new_tokens: int
    eos: int
    pad: int
    no_speech_token: int
    sampling: tuple[float, int] | None  # (temperature, top_k) or None for greedy
    want_scores: bool


class FlaxWhisperGenerationMixin:
    """``generate`` and ``detect_language`` for :class:`~whisper_flax.modeling.FlaxWhisperForConditionalGeneration`."""

    def detect_language(self, input_features: Any = None, encoder_outputs: Any = None) -> list[dict[str, float]]:
        """Per input, the probability of each language the model knows (``{"en": 0.97, ...}``)."""
        ids = PrefixIds.from_generation_config(self.generation_config)
        if not ids.is_multilingual:
            raise ValueError("this is an English-only model: it has no language tokens to detect")
        encoder_states = self._encoder_states(input_features, encoder_outputs)
        probabilities = np.asarray(self._language_probabilities(ids, encoder_states))
        codes = [token[2:-2] for token in ids.lang_to_id]
        return [dict(zip(codes, row.tolist(), strict=True)) for row in probabilities]

    def generate(
        self,
        input_features: Any = None,
        generation_config: Any = None,
        *,
        encoder_outputs: Any = None,
        language: str | list[str | None] | None = None,
        task: str | None = None,
        return_timestamps: bool | None = None,
        prompt_ids: Any = None,
        max_new_tokens: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        num_beams: int | None = None,
        output_scores: bool | None = None,
        return_dict_in_generate: bool | None = None,
        return_segments: bool = False,
        prng_key: jax.Array | None = None,
        params: Any = None,
        **kwargs: Any,
    ) -> jax.Array | WhisperGenerateOutput:
        """Token ids ``[batch, prefix + generated]`` (greedy by default), padded with ``<|endoftext|>``.

        ``language``: a code, name or ``<|xx|>`` token, one per row, or ``None`` to detect it
        (multilingual models). ``task``: "transcribe" (default) or "translate". ``prompt_ids``: one
        ``<|startofprev|>`` prompt for every row, or a list with one (or ``None``) per row; rows are
        then left-padded and their positions counted from their first real token. ``do_sample`` draws
        with ``prng_key`` (default ``PRNGKey(0)``). Beam search is not implemented in this backend.
        """
        config = generation_config or self.generation_config
        if kwargs:
            raise TypeError(f"generate() got unsupported arguments: {sorted(kwargs)}")
        num_beams = num_beams if num_beams is not None else config.num_beams
        if num_beams > 1:
            raise ValueError("the Flax backend decodes greedily or by sampling only: use num_beams=1")
        do_sample = config.do_sample if do_sample is None else do_sample
        temperature = config.temperature if temperature is None else temperature
        top_k = config.top_k if top_k is None else top_k
        return_timestamps = bool(config.return_timestamps if return_timestamps is None else return_timestamps)
        output_scores = bool(config.output_scores if output_scores is None else output_scores)
        return_dict = config.return_dict_in_generate if return_dict_in_generate is None else return_dict_in_generate
        return_dict = return_dict or return_segments
        ids = PrefixIds.from_generation_config(config)

        encoder_states = self._encoder_states(input_features, encoder_outputs, params)
        batch = encoder_states.shape[0]
        rows = languages_per_row(language if language is not None else config.language, batch)
        language_tokens = [None if row is None else ids.language_token(row) for row in rows]
        if ids.is_multilingual and None in language_tokens:
            detected = np.asarray(self._language_probabilities(ids, encoder_states, params)).argmax(axis=-1)
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
        spec = _LoopSpec(
            rules=rules,
            max_new_tokens=max_new_tokens,
            eos=config.eos_token_id,
            pad=pad,
            no_speech_token=ids.no_speech_token_id,
            sampling=(float(temperature), int(top_k or 0)) if do_sample and temperature > 0 else None,
            want_scores=output_scores,
        )
        loop = self._compiled(spec, lambda: jax.jit(partial(self._decode_loop, spec)))
        padding = np.asarray(padding, np.int32)
        sot_positions = padding + np.asarray([len(p) for p in prompts], np.int32)
        tokens, length, no_speech, scores = loop(
            self._params(params)["params"],
            encoder_states,
            jnp.asarray(prefixes, jnp.int32),
            jnp.asarray(padding),
            jnp.asarray(sot_positions),
            prng_key if prng_key is not None else jax.random.PRNGKey(0),
        )
        length = int(length)
        sequences = tokens[:, :length]
        if not return_dict:
            return sequences
        languages = [ids.language_of_token(t) for t in language_tokens] if ids.is_multilingual else None
        segments = None
        if return_segments:
            if not return_timestamps:
                raise ValueError("return_segments needs return_timestamps=True")
            segments = [
                split_segments(row, rules.timestamp_begin, config.eos_token_id)
                for row in np.asarray(sequences[:, begin:]).tolist()
            ]
        steps = tuple(scores[:, step] for step in range(length - begin)) if output_scores else None
        return WhisperGenerateOutput(sequences, steps, no_speech, languages, segments)

    # -- pieces ----------------------------------------------------------------------------
    def _encoder_states(self, input_features: Any, encoder_outputs: Any, params: Any = None) -> jax.Array:
        if encoder_outputs is not None:
            return (
                encoder_outputs[0] if isinstance(encoder_outputs, tuple | list) else encoder_outputs.last_hidden_state
            )
        if input_features is None:
            raise ValueError("give input_features (or encoder_outputs)")
        encode = self._compiled("encode", lambda: jax.jit(partial(self.module.apply, method="encode")))
        return encode(self._params(params), jnp.asarray(input_features, jnp.float32)).last_hidden_state

    def _language_probabilities(self, ids: PrefixIds, encoder_states: jax.Array, params: Any = None) -> jax.Array:
        """``[batch, languages]`` softmax over the language tokens after ``<|startoftranscript|>``."""

        def probabilities(variables: Any, states: jax.Array) -> jax.Array:
            start = jnp.full((states.shape[0], 1), ids.decoder_start_token_id, jnp.int32)
            logits = self.module.apply(variables, start, states, method="decode").logits[:, -1]
            language_ids = jnp.asarray(list(ids.lang_to_id.values()))
            return jax.nn.softmax(logits.astype(jnp.float32)[:, language_ids], axis=-1)

        key = ("detect", ids.decoder_start_token_id, tuple(ids.lang_to_id.values()))
        detect = self._compiled(key, lambda: jax.jit(probabilities))
        return detect(self._params(params), encoder_states)

    def _decode_loop(
        self,
        spec: _LoopSpec,
        params: Any,
        encoder_states: jax.Array,
        prefix: jax.Array,
        padding: jax.Array,
        sot_positions: jax.Array,
        key: jax.Array,
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """The traced loop: ``prefix [b, begin]`` (left-padded by ``padding [b]``) -> ``(tokens [b, capacity],
        length, no_speech_probs [b], scores [b, max_new_tokens or 0, vocab])``; ``tokens[:, :length]`` is
        the result. Runs once per compilation (``_loop_traces`` counts it)."""
        self._loop_traces = getattr(self, "_loop_traces", 0) + 1
        ops, rules = JaxOps(), spec.rules
        masks = rules.masks(ops, encoder_states)
        batch, begin = prefix.shape
        capacity = begin + spec.max_new_tokens
        variables = {"params": params}
        columns = jnp.arange(capacity)[None, :]
        attention_mask = (columns >= padding[:, None]).astype(jnp.int32)  # [b, capacity]: 1 on real tokens
        positions = jnp.maximum(columns - padding[:, None], 0)  # each row counts from its first real token

        def decode(step_input: jax.Array, cache: Any, start: Any) -> Any:
            """One cached pass over ``step_input [b, n]`` sitting at positions ``start .. start + n``."""
            step_positions = jax.lax.dynamic_slice(positions, (0, start), step_input.shape)
            return self.module.apply(
                variables,
                step_input,
                None,
                attention_mask=attention_mask,
                position_ids=step_positions,
                past_key_values=cache,
                method="decode",
            )

        cache = self.module.apply(variables, encoder_states, capacity, method="init_cache")
        out = decode(prefix, cache, 0)
        first = jax.nn.softmax(out.logits[jnp.arange(batch), sot_positions].astype(jnp.float32), axis=-1)
        no_speech = first[:, spec.no_speech_token]
        tokens = jnp.full((batch, capacity), spec.pad, jnp.int32).at[:, :begin].set(prefix)
        scores = jnp.zeros((batch, spec.max_new_tokens if spec.want_scores else 0, self.config.vocab_size))

        def step(state: tuple) -> tuple:
            tokens, length, cache, logits, finished, scores, key = state
            logits = rules.apply(ops, logits, tokens, length, begin, masks)
            key, draw = jax.random.split(key)
            next_tokens = jnp.where(finished, spec.pad, _pick(logits, spec.sampling, draw))
            tokens = jax.lax.dynamic_update_slice(tokens, next_tokens[:, None], (0, length))
            if spec.want_scores:
                scores = jax.lax.dynamic_update_slice(scores, logits[:, None], (0, length - begin, 0))
            out = decode(next_tokens[:, None], cache, length)
            finished = finished | (next_tokens == spec.eos)
            return tokens, length + 1, out.past_key_values, out.logits[:, -1].astype(jnp.float32), finished, scores, key

        def running(state: tuple) -> jax.Array:
            _, length, _, _, finished, _, _ = state
            return (length < capacity) & ~jnp.all(finished)

        start = (
            tokens,
            jnp.asarray(begin, jnp.int32),
            out.past_key_values,
            out.logits[:, -1].astype(jnp.float32),
            jnp.zeros(batch, bool),
            scores,
            key,
        )
        tokens, length, _, _, _, scores, _ = jax.lax.while_loop(running, step, start)
        return tokens, length, no_speech, scores


def _pick(logits: jax.Array, sampling: tuple[float, int] | None, key: jax.Array) -> jax.Array:
    """Greedy argmax, or a sample at ``temperature`` from the ``top_k`` most likely tokens."""
    if sampling is None:
        return logits.argmax(axis=-1).astype(jnp.int32)
    temperature, top_k = sampling
    logits = logits / temperature
    if top_k:
        kth = jax.lax.top_k(logits, min(top_k, logits.shape[-1]))[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def _prompts_per_row(prompt_ids: Any, batch: int) -> list[list[int] | None]:
    """One prompt (a token list or ``None``) per row, from a shared prompt or a per-row list."""
    if prompt_ids is None:
        return [None] * batch
    if isinstance(prompt_ids, list | tuple) and prompt_ids and not isinstance(prompt_ids[0], int | np.integer):
        if len(prompt_ids) != batch:
            raise ValueError(f"got {len(prompt_ids)} prompts for a batch of {batch}")
        return [None if p is None else _as_list(p) for p in prompt_ids]
    return [_as_list(prompt_ids)] * batch


def _as_list(prompt_ids: Any) -> list[int]:
    return [int(t) for t in np.asarray(prompt_ids).reshape(-1)]


def _left_pad(rows: list[list[int]], pad: int) -> tuple[list[list[int]], list[int]]:
    """Left-pad token rows to one length; also return how much padding each row got."""
    width = max(len(row) for row in rows)
    return [[pad] * (width - len(row)) + row for row in rows], [width - len(row) for row in rows]
