"""TensorFlow ``generate`` and ``detect_language`` for Whisper, driven by the shared decoding rules.

The rules (suppression, timestamp rules, prefixes, language tokens, beam bookkeeping), the resolution
of the options and the public methods come from :mod:`whisper_core.decoding`; this module supplies
the TF array ops and the loops. As in the Flax backend, each search (greedy/sampling, beam) is one
``tf.function(jit_compile=True)`` around a ``tf.while_loop`` over a preallocated token buffer and
:class:`~whisper_tf.outputs.KVCache`: the prefix is decoded once, then one token per iteration, with
the sequence length a traced scalar that the rules read. XLA compiles it once per (batch, prefix
length, ``max_new_tokens`` rounded up to :data:`~whisper_core.decoding.plan.ROOM_STEP`, rules, search)
and reuses it for every later call of the same shapes. The copies of one input (``best_of`` draws,
beams) decode from one prefix pass and attend to one copy of its cross-attention keys/values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from functools import partial
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from whisper_core.decoding import (
    ROOM_STEP,
    GenerationFrontEnd,
    GenerationPlan,
    LoopSpec,
    NumpyOps,
    PrefixIds,
    beam,
    first_argmax,
    invert_distribution,
    keep_top_k,
    sampling_draws,
    shared_prefix_pass,
)

from .outputs import KVCache
from .programs import Program


def xla_function(function: Callable) -> Callable:
    """``function`` compiled by XLA, traced as written: its loops are ``tf.while_loop`` and its branches
    ``tf.cond``/``tf.where`` already, so AutoGraph's rewrite of every Python function it reaches (parse,
    transform, recompile) would change nothing and cost each process 1-1.5 s per program it traces."""
    return tf.function(function, jit_compile=True, autograph=False)


class TfOps:
    """:class:`whisper_core.decoding.beam.BeamOps` over TF tensors (traceable: usable under XLA).

    Integer constants become int32, the dtype of the token buffer and of the traced length, because
    TensorFlow does not promote between integer widths. Boolean ones (the rules' vocabulary masks) are
    written as bytes and cast: TensorFlow copies a boolean array into a graph element by element (37 ms
    for a vocabulary's mask, about 5 per traced loop) and a byte array in one piece (0.06 ms).
    """

    def constant(self, values: np.ndarray, like: Any) -> tf.Tensor:
        values = np.asarray(values)
        if values.dtype == np.bool_:
            return tf.cast(tf.constant(values.view(np.uint8)), tf.bool)
        return tf.constant(values.astype(np.int32) if values.dtype.kind in "iu" else values)

    def where(self, condition: Any, x: Any, y: Any) -> tf.Tensor:
        return tf.where(condition, x, y)

    def sum(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(x, axis=-1, keepdims=True)

    def max(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_max(x, axis=-1, keepdims=True)

    def logsumexp(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_logsumexp(x, axis=-1, keepdims=True)

    def log_softmax(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.log_softmax(x, axis=-1)

    def neg_inf(self, like: tf.Tensor) -> tf.Tensor:
        return tf.constant(-np.inf, like.dtype)

    # -- beam search -----------------------------------------------------------------------
    def top_k(self, x: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.math.top_k(x, k)

    def gather_beams(self, x: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        return tf.gather(x, indices, batch_dims=1)

    def concat(self, tensors: list[tf.Tensor], axis: int) -> tf.Tensor:
        return tf.concat(tensors, axis=axis)

    def set_column(self, x: tf.Tensor, column: tf.Tensor, index: Any) -> tf.Tensor:
        at_index = tf.range(x.shape[-1]) == tf.cast(index, tf.int32)  # [length]
        return tf.where(at_index, tf.cast(column, x.dtype)[:, :, None], x)

    def to_float(self, x: tf.Tensor) -> tf.Tensor:
        return tf.cast(x, tf.float32)

    def reshape(self, x: tf.Tensor, shape: tuple[int, ...]) -> tf.Tensor:
        return tf.reshape(x, shape)

    def min(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_min(x, axis=-1, keepdims=True)

    def any(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_any(x, axis=-1, keepdims=True)

    def all_true(self, x: tf.Tensor) -> bool:
        return bool(tf.reduce_all(x))

    # -- greedy pick (first_argmax) ------------------------------------------------------------
    def is_nan(self, x: tf.Tensor) -> tf.Tensor:
        return tf.math.is_nan(x)

    def positions(self, like: tf.Tensor) -> tf.Tensor:
        return tf.range(tf.shape(like)[-1])

    # -- sampling ------------------------------------------------------------------------------
    def cumsum(self, x: tf.Tensor) -> tf.Tensor:
        return tf.cumsum(x, axis=-1)

    def float_bits(self, x: tf.Tensor) -> tf.Tensor:
        return tf.bitcast(tf.cast(x, tf.float32), tf.int32)

    def from_float_bits(self, x: tf.Tensor) -> tf.Tensor:
        return tf.bitcast(x, tf.float32)


class _TracedLength:
    """The traced int32 sequence length as :func:`whisper_core.decoding.beam.step` uses it.

    ``beam.step`` raises the length to the float ``length_penalty``; TensorFlow has no int ** float, so
    the power is taken in float32 while sums, comparisons and use as a tensor stay int32.
    """

    def __init__(self, value: tf.Tensor) -> None:
        self.value = value

    def __add__(self, other: Any) -> _TracedLength:
        return _TracedLength(self.value + other)

    def __sub__(self, other: Any) -> _TracedLength:
        return _TracedLength(self.value - other)

    def __ge__(self, other: Any) -> tf.Tensor:
        return self.value >= other

    def __pow__(self, exponent: float) -> tf.Tensor:
        return tf.cast(self.value, tf.float32) ** exponent


tf.register_tensor_conversion_function(_TracedLength, lambda length, dtype=None, name=None, as_ref=False: length.value)


class TFWhisperGenerationMixin(GenerationFrontEnd):
    """``generate`` and ``detect_language`` (:class:`~whisper_core.decoding.frontend.GenerationFrontEnd`) for
    :class:`~whisper_tf.modeling.TFWhisperForConditionalGeneration`; ``generate(..., seed=0)``: ``do_sample``
    draws from ``seed`` (:func:`~whisper_core.decoding.sampling_draws`: the same tokens as PyTorch's
    ``seed=`` and JAX's ``prng_key=PRNGKey(seed)``, up to float rounding)."""

    search_option_names = ("seed",)

    def _to_host(self, tensor: tf.Tensor) -> np.ndarray:
        return tensor.numpy()

    def _from_host(self, array: np.ndarray, like: tf.Tensor) -> tf.Tensor:
        return tf.convert_to_tensor(array)

    def _search(
        self, plan: GenerationPlan, encoder_states: tf.Tensor, seed: int = 0
    ) -> tuple[tf.Tensor, Any, tf.Tensor, tf.Tensor | None]:
        """Run the plan's search: ``(sequences [batch, length], scores, no_speech_probs [batch], logprobs)``."""
        inputs = (
            encoder_states,
            tf.constant(plan.prefixes, tf.int32),
            tf.constant(plan.padding, tf.int32),
            tf.constant(plan.sot_positions, tf.int32),
        )
        if plan.num_beams > 1:
            spec = plan.loop_spec()
            loop = self._compiled(spec, lambda: xla_function(partial(self._beam_loop, spec)))
            start = beam.initial_state(
                NumpyOps(), np.asarray(plan.prefixes), plan.num_beams, plan.capacity, plan.pad, None
            )
            state, no_speech = loop(*inputs, _state_tensors(start))
            sequences, scores, longest = beam.best_sequences(TfOps(), beam.BeamState(*state))
            sequences, logprobs = sequences[:, :longest], None
        else:
            copies = plan.row_copies(partial(_same_rows, encoder_states))
            spec = plan.loop_spec(copies, room_step=ROOM_STEP)
            inputs = tuple(x[:: spec.copies] for x in inputs)  # one row per input: its copies share the prefix
            prefix_pass = self._prefix_program(plan.begin + spec.max_new_tokens, spec.no_speech_token)
            last, no_speech, cache = shared_prefix_pass(self, inputs, _same_tensor, lambda: prefix_pass(*inputs))
            loop = self._compiled(spec, lambda: xla_function(partial(self._greedy_loop, spec)))
            # inputs: one program for every temperature, and for nearby limits of new tokens
            temperature, limit = tf.constant(plan.temperature, tf.float32), tf.constant(plan.max_new_tokens, tf.int32)
            end_floors = tf.constant(plan.end_floors[:: spec.copies], tf.int32)
            draws = tf.constant(sampling_draws(seed, spec.max_new_tokens, len(plan.prefixes)))
            tokens, length, no_speech, step_scores, logprobs = loop(
                inputs[1], inputs[2], end_floors, last, no_speech, cache, draws, temperature, limit
            )
            length = int(length)
            sequences = tokens[:, :length]
            scores = tuple(step_scores[:, step] for step in range(length - plan.begin)) if plan.output_scores else None
            logprobs = logprobs[:, : length - plan.begin] if plan.output_logprobs else None
        return sequences, scores, no_speech, logprobs

    # -- pieces ----------------------------------------------------------------------------
    def _compiled(self, key: Any, make: Callable[[], Callable]) -> Callable:
        """One compiled function per ``key`` for this model (``tf.function`` then keeps one trace per shape),
        kept on disk as function libraries where :func:`~whisper_tf.programs.keep_programs` asks. ``key``, the
        model's config and dtypes and its weights are all a program depends on besides the code and the
        arguments: every ``make`` builds its function from them alone."""
        compiled = self.__dict__.setdefault("_compiled_functions", {})
        if key not in compiled:
            compiled[key] = Program(make(), self, lambda: self._describe(key))
        return compiled[key]

    def _describe(self, key: Any) -> str:
        """What a traced program of this model depends on besides the code, its weights and its arguments: the
        class, the dtype policy, the whole config as it is now, and the program's key."""
        config = json.dumps(self.config.to_dict(), sort_keys=True, default=str)
        return f"{type(self).__qualname__} {self.dtype_policy.name}\n{config}\n{key!r}"

    def _encode(self, input_features: Any) -> tf.Tensor:
        # XLA: it fuses the attention softmax and the elementwise work between matrix products, which
        # TensorFlow's graph runs op by op over [heads, 1500, 1500] scores (base: 618 against 778 ms).
        encode = self._compiled("encode", lambda: xla_function(lambda x: self.get_encoder()(x).last_hidden_state))
        return encode(tf.convert_to_tensor(input_features, tf.float32))

    def _as_tensor(self, array: Any) -> tf.Tensor:
        return tf.convert_to_tensor(array)

    def _language_probabilities(self, ids: PrefixIds, encoder_states: tf.Tensor) -> tf.Tensor:
        """``[batch, languages]`` softmax over the language tokens after ``<|startoftranscript|>``."""

        def probabilities(states: tf.Tensor) -> tf.Tensor:
            start = tf.fill((tf.shape(states)[0], 1), ids.decoder_start_token_id)
            hidden = self.get_decoder()(input_ids=start, encoder_hidden_states=states).last_hidden_state
            logits = tf.cast(self.lm_logits(hidden)[:, -1], tf.float32)
            return tf.nn.softmax(tf.gather(logits, list(ids.lang_to_id.values()), axis=-1), axis=-1)

        key = ("detect", ids.decoder_start_token_id, tuple(ids.lang_to_id.values()))
        return self._compiled(key, lambda: xla_function(probabilities))(encoder_states)

    def _cached_decoder(self, padding: tf.Tensor, capacity: int) -> Callable[..., Any]:
        """``decode(step_input [rows, n], cache, start) -> (hidden [rows, n, d], cache)``: one cached
        decoder pass over tokens at positions ``start .. start + n`` of rows left-padded by ``padding [rows]``."""
        columns = tf.range(capacity)[None, :]
        attention_mask = tf.cast(columns >= padding[:, None], tf.int32)  # [rows, capacity]: 1 on real tokens
        positions = tf.maximum(columns - padding[:, None], 0)  # each row counts from its first real token

        def decode(step_input: tf.Tensor, cache: KVCache, start: Any) -> tuple[tf.Tensor, KVCache]:
            step_positions = tf.slice(positions, tf.stack([0, start]), [-1, step_input.shape[1]])
            out = self.get_decoder()(
                input_ids=step_input, attention_mask=attention_mask, position_ids=step_positions, past_key_values=cache
            )
            return out.last_hidden_state, out.past_key_values

        return decode

    def _logits(self, hidden: tf.Tensor) -> tf.Tensor:
        """``[rows, d]`` -> float32 ``[rows, vocab]``."""
        return tf.cast(self.lm_logits(hidden), tf.float32)

    def _prefix_program(self, capacity: int, no_speech_token: int) -> Callable[..., Any]:
        """:meth:`_prefix_pass` into a cache of ``capacity`` positions, compiled (one program for the greedy and
        the sampling loops, which take its outputs)."""
        key = ("prefix", capacity, no_speech_token)
        return self._compiled(key, lambda: xla_function(partial(self._prefix_pass, capacity, no_speech_token)))

    def _prefix_pass(
        self,
        capacity: int,
        no_speech_token: int,
        encoder_states: tf.Tensor,
        prefix: tf.Tensor,
        padding: tf.Tensor,
        sot_positions: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor, KVCache]:
        """Run the prefix once per input (the rows of ``prefix``) into a fresh cache of ``capacity`` positions:
        ``(last logits [inputs, vocab], no_speech_probs [inputs], cache)``. Only the positions read are
        projected onto the vocabulary (a 200-token prompt would otherwise cost 200 rows of that projection)."""
        prefill = self._cached_decoder(padding, capacity)
        hidden, cache = prefill(prefix, self.get_decoder().init_cache(encoder_states, capacity), 0)
        at_sot = tf.gather(hidden, sot_positions, batch_dims=1)  # [inputs, d]
        no_speech = tf.nn.softmax(self._logits(at_sot), axis=-1)[:, no_speech_token]
        return self._logits(hidden[:, -1]), no_speech, cache

    def _copies(
        self, padding: tf.Tensor, capacity: int, last: tf.Tensor, cache: KVCache, copies: int
    ) -> tuple[Callable[..., Any], tf.Tensor, KVCache]:
        """Give each input of a prefix pass ``copies`` rows: ``(step decoder over those rows, their last
        logits [rows, vocab], cache)``."""
        if copies == 1:
            return self._cached_decoder(padding, capacity), last, cache
        cache = _repeat_inputs(cache, tf.shape(padding)[0], copies)
        return self._cached_decoder(tf.repeat(padding, copies), capacity), tf.repeat(last, copies, 0), cache

    def _greedy_loop(
        self,
        spec: LoopSpec,
        prefix: tf.Tensor,
        padding: tf.Tensor,
        end_floors: tf.Tensor,
        last: tf.Tensor,
        no_speech: tf.Tensor,
        cache: KVCache,
        draws: tf.Tensor,
        temperature: tf.Tensor,
        limit: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Greedy or sampling after a prefix pass (:meth:`_prefix_pass`: its ``last`` logits, ``no_speech``
        probabilities and ``cache``, one row per input): ``prefix [inputs, begin]`` (left-padded by ``padding
        [inputs]``, each held to its earliest end ``end_floors [inputs]``: :attr:`GenerationPlan.end_floors`),
        each input decoded by ``spec.copies`` rows (a sampling row ``r`` at new token ``i`` draws ``draws[i,
        r]``), at most ``limit <= spec.max_new_tokens`` new tokens ->
        ``(tokens [b, capacity], length, no_speech_probs [b], scores [b, max_new_tokens or 0, vocab], logprobs
        [b, max_new_tokens or 0])`` with ``b = inputs * copies``; ``tokens[:, :length]`` is the result. Traced
        once per compilation (``_loop_traces`` counts it)."""
        self.__dict__["_loop_traces"] = self.__dict__.get("_loop_traces", 0) + 1
        ops, rules, copies = TfOps(), spec.rules, spec.copies
        masks = rules.masks(ops, last, tf.repeat(end_floors, copies)[:, None])
        batch, begin = tf.shape(prefix)[0] * copies, prefix.shape[1]  # the batch may be unknown (an export)
        capacity = begin + spec.max_new_tokens
        decode, last, cache = self._copies(padding, capacity, last, cache, copies)
        no_speech = tf.repeat(no_speech, copies)
        prefix = tf.repeat(prefix, copies, axis=0)
        tokens = tf.concat([prefix, tf.fill((batch, spec.max_new_tokens), spec.pad)], axis=1)
        scores = tf.zeros(tf.stack([batch, spec.max_new_tokens if spec.want_scores else 0, self.config.vocab_size]))
        logprobs = tf.zeros(tf.stack([batch, spec.max_new_tokens if spec.want_logprobs else 0]))
        columns = tf.range(capacity)

        def step(tokens, length, cache, logits, finished, scores, logprobs):  # the loop carry, unpacked
            logits = rules.apply(ops, logits, tokens, length, begin, masks)
            picked = _pick(logits, spec.sampling, temperature, tf.gather(draws, length - begin)[:, None])
            next_tokens = tf.where(finished, spec.pad, picked)
            tokens = tf.where(columns[None, :] == length, next_tokens[:, None], tokens)
            if spec.want_scores:
                scores = xla.dynamic_update_slice(scores, logits[:, None], tf.stack([0, length - begin, 0]))
            if spec.want_logprobs:
                picked_logprobs = tf.gather(logits, next_tokens, batch_dims=1) - tf.reduce_logsumexp(logits, -1)
                logprobs = xla.dynamic_update_slice(logprobs, picked_logprobs[:, None], tf.stack([0, length - begin]))
            hidden, cache = decode(next_tokens[:, None], cache, length)
            finished = finished | (next_tokens == spec.eos)
            return tokens, length + 1, cache, self._logits(hidden[:, -1]), finished, scores, logprobs

        def running(tokens, length, cache, logits, finished, scores, logprobs):
            return (length < begin + limit) & ~tf.reduce_all(finished)

        start = (tokens, tf.constant(begin), cache, last, tf.zeros(batch, tf.bool), scores, logprobs)
        tokens, length, _, _, _, scores, logprobs = tf.while_loop(running, step, start)
        return tokens, length, no_speech, scores, logprobs

    def _beam_loop(
        self,
        spec: LoopSpec,
        encoder_states: tf.Tensor,
        prefix: tf.Tensor,
        padding: tf.Tensor,
        sot_positions: tf.Tensor,
        state: tuple[tf.Tensor, ...],
    ) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        """Beam search from ``state`` (:func:`whisper_core.decoding.beam.initial_state`, as a tuple of its
        fields) until no beam can improve: ``(final state fields, no_speech_probs [b])``. Every beam is a
        row of the model batch (``[b * beams]``); after each step the self-attention cache follows the
        beams that survived."""
        self.__dict__["_loop_traces"] = self.__dict__.get("_loop_traces", 0) + 1
        ops, rules, beams = TfOps(), spec.rules, spec.num_beams
        masks = rules.masks(ops, encoder_states)
        batch, begin = prefix.shape
        capacity = begin + spec.max_new_tokens
        rows = batch * beams
        last, no_speech, cache = self._prefix_pass(
            capacity, spec.no_speech_token, encoder_states, prefix, padding, sot_positions
        )
        decode, last, cache = self._copies(padding, capacity, last, cache, beams)
        offsets = tf.range(batch)[:, None] * beams

        def advance(state: beam.BeamState, logits: tf.Tensor, length: tf.Tensor) -> beam.BeamState:
            return beam.advance(
                ops, spec, masks, state, logits, length=length, begin=begin, step_length=_TracedLength(length)
            )

        def step(fields, length, cache):  # the loop carry, unpacked
            state = beam.BeamState(*fields)
            order = tf.reshape(state.source_beam + offsets, (-1,))  # [b * beams] rows of the old cache
            step_input = tf.slice(tf.reshape(state.running, (rows, capacity)), tf.stack([0, length - 1]), [rows, 1])
            hidden, cache = decode(step_input, _reorder_self_attention(cache, order), length - 1)
            return _state_tensors(advance(state, self._logits(hidden[:, -1]), length)), length + 1, cache

        def running(fields, length, cache):
            return beam.continuing(ops, beam.BeamState(*fields))[0, 0] & (length < capacity)

        length = tf.constant(begin)
        state = advance(beam.BeamState(*state), last, length)
        fields, _, _ = tf.while_loop(running, step, (_state_tensors(state), length + 1, cache))
        return fields, no_speech


def _state_tensors(state: beam.BeamState) -> tuple[tf.Tensor, ...]:
    """The beam state as a tuple of tensors (integers as int32): a ``tf.while_loop`` carry."""
    ops = TfOps()
    return tuple(
        ops.constant(value, None) if isinstance(value, np.ndarray) else value
        for value in (getattr(state, field.name) for field in fields(state))
    )


def _same_rows(encoder_states: tf.Tensor, i: int, j: int) -> bool:
    return bool(tf.reduce_all(encoder_states[i] == encoder_states[j]))


def _same_tensor(kept: tf.Tensor, given: tf.Tensor) -> bool:
    """Whether a prefix pass's input equals a kept one's, by value."""
    same_kind = kept.shape == given.shape and kept.dtype == given.dtype
    return same_kind and bool(tf.reduce_all(kept == given))


def _repeat_inputs(cache: KVCache, inputs: tf.Tensor, copies: int) -> KVCache:
    """The cache with each input's self-attention rows (one per head) repeated ``copies`` times, input by
    input; the copies share the input's cross-attention rows (see ``TFWhisperAttention._attend_copies``)."""

    def repeat(x: tf.Tensor) -> tf.Tensor:
        per_input = tf.reshape(x, tf.concat([[inputs, -1], tf.shape(x)[1:]], 0))  # [inputs, heads, ...]
        return tf.reshape(tf.repeat(per_input, copies, axis=0), tf.concat([[-1], tf.shape(x)[1:]], 0))

    return KVCache(tuple((repeat(k), repeat(v), *cross) for k, v, *cross in cache.layers), cache.index)


def _reorder_self_attention(cache: KVCache, order: tf.Tensor) -> KVCache:
    """The cache with its self-attention rows in ``order`` (model rows; the cache has one row per head of
    each); cross-attention rows are left alone (every beam of an item attends to the same audio)."""
    heads = tf.shape(cache.layers[0][0])[0] // tf.shape(order)[0]
    rows = tf.reshape(order[:, None] * heads + tf.range(heads)[None, :], (-1,))
    layers = tuple((tf.gather(k, rows), tf.gather(v, rows), *cross) for k, v, *cross in cache.layers)
    return KVCache(layers, cache.index)


def _pick(logits: tf.Tensor, top_k: int | None, temperature: tf.Tensor, draw: tf.Tensor) -> tf.Tensor:
    """Greedy argmax (``top_k`` None), or a sample at ``temperature`` from the ``top_k`` most likely tokens
    (0: from all of them) by :func:`~whisper_core.decoding.invert_distribution` at each row's ``draw [rows,
    1]`` (uniform in [0, 1)), in float32 as the PyTorch and JAX loops do (float64's softmax cost 2.4 ms a
    step at five rows, base, one-off script, 2026-12-06): ``stateless_categorical`` draws one number per
    token (~4 ms a step at 8 rows)."""
    ops = TfOps()
    if top_k is None:
        return first_argmax(ops, logits)
    logits = logits / temperature
    if top_k:
        logits = keep_top_k(ops, logits, top_k)
    probabilities = tf.nn.softmax(logits, axis=-1)
    return invert_distribution(ops, logits, probabilities, draw)
