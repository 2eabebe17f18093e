"""JAX ``generate`` and ``detect_language`` for Whisper, driven by the shared decoding rules.

The rules (suppression, timestamp rules, prefixes, language tokens, beam bookkeeping), the resolution
of the options and the public methods come from :mod:`whisper_core.decoding`; this module supplies
the jnp array ops and the loops. Unlike the PyTorch loops, each search (greedy/sampling, beam) is one ``jax.jit``
function around a ``lax.while_loop`` over a preallocated token buffer and
:class:`~whisper_flax.outputs.KVCache`: the prefix is decoded once, then one token per iteration,
with the sequence length a traced scalar that the rules read. It compiles once per (batch, prefix
length, ``max_new_tokens`` rounded up to :data:`~whisper_core.decoding.plan.ROOM_STEP`, rules, search)
and is reused by every later call of the same shapes. The copies of one input (``best_of`` draws,
beams) decode from one prefix pass and attend to one copy of its cross-attention keys/values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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


def on_device(values: Any, dtype: Any = None) -> jax.Array:
    """``values`` as a device array (in ``dtype`` when given), moved without compiling anything: ``jnp.asarray``
    of a NumPy array runs a small copy program, compiled once per shape and dtype in every process (JAX
    0.10), and a cast on the device one more."""
    if isinstance(values, jax.Array):
        return values if dtype is None else values.astype(dtype)
    return jax.device_put(np.asarray(values, dtype))


# The beam state is the carry of the compiled beam loop, so it has to be a pytree.
jax.tree_util.register_dataclass(beam.BeamState, data_fields=[f.name for f in fields(beam.BeamState)], meta_fields=[])


class JaxOps:
    """:class:`whisper_core.decoding.beam.BeamOps` over jnp arrays (traceable: usable inside ``jax.jit``)."""

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

    # -- beam search -----------------------------------------------------------------------
    def top_k(self, x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
        return jax.lax.top_k(x, k)

    def gather_beams(self, x: jax.Array, indices: jax.Array) -> jax.Array:
        return x[jnp.arange(x.shape[0])[:, None], indices]

    def concat(self, tensors: list[jax.Array], axis: int) -> jax.Array:
        return jnp.concatenate(tensors, axis=axis)

    def set_column(self, x: jax.Array, column: jax.Array, index: Any) -> jax.Array:
        return x.at[:, :, index].set(column.astype(x.dtype))

    def to_float(self, x: jax.Array) -> jax.Array:
        return x.astype(jnp.float32)

    def reshape(self, x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jnp.reshape(x, shape)

    def min(self, x: jax.Array) -> jax.Array:
        return x.min(axis=-1, keepdims=True)

    def any(self, x: jax.Array) -> jax.Array:
        return x.any(axis=-1, keepdims=True)

    def all_true(self, x: jax.Array) -> bool:
        return bool(jnp.all(x))

    # -- greedy pick (first_argmax) ------------------------------------------------------------
    def is_nan(self, x: jax.Array) -> jax.Array:
        return jnp.isnan(x)

    def positions(self, like: jax.Array) -> jax.Array:
        return jnp.arange(like.shape[-1], dtype=jnp.int32)

    # -- sampling ------------------------------------------------------------------------------
    def cumsum(self, x: jax.Array) -> jax.Array:
        return jnp.cumsum(x, axis=-1)

    def float_bits(self, x: jax.Array) -> jax.Array:
        return jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)

    def from_float_bits(self, x: jax.Array) -> jax.Array:
        return jax.lax.bitcast_convert_type(x, jnp.float32)


class FlaxWhisperGenerationMixin(GenerationFrontEnd):
    """``generate`` and ``detect_language`` (:class:`~whisper_core.decoding.frontend.GenerationFrontEnd`) for
    :class:`~whisper_flax.modeling.FlaxWhisperForConditionalGeneration`. Both take ``params`` (default the
    model's own); ``generate(..., prng_key=...)``: ``do_sample`` draws from it (default ``PRNGKey(0)``),
    from its key data as an integer seed (:func:`~whisper_core.decoding.sampling_draws`; ``PRNGKey(s)``
    holds ``[0, s]``), so ``PRNGKey(s)`` samples the same tokens as TensorFlow's and PyTorch's ``seed=s``,
    up to float rounding."""

    model_option_names = ("params",)
    search_option_names = ("prng_key",)

    def _to_host(self, tensor: jax.Array) -> np.ndarray:
        return np.asarray(tensor)

    def _from_host(self, array: np.ndarray, like: jax.Array) -> jax.Array:
        return on_device(array)

    def _search(
        self, plan: GenerationPlan, encoder_states: jax.Array, params: Any = None, prng_key: jax.Array | None = None
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array | None]:
        """Run the plan's search: ``(sequences [batch, length], scores, no_speech_probs [batch], logprobs)``.
        What surrounds the loop (casts, strides, cutting the buffer to the length decoded) runs in NumPy: on a
        device array each such operation is a small program of its own, compiled afresh in every process
        (too quick to compile for the persistent cache) and, for the cut, once per length decoded. A
        process transcribing the benchmarks' 127 s file compiled 52 such programs: about 1.5 s of lowering and
        compiling (2026-12-06, JAX's compile log)."""
        rows = [np.asarray(x, np.int32) for x in (plan.prefixes, plan.padding, plan.sot_positions)]
        params = self._params(params)["params"]
        if plan.num_beams > 1:
            spec = plan.loop_spec()
            loop = self._compiled(spec, lambda: jax.jit(partial(self._beam_loop, spec)))
            start = beam.initial_state(NumpyOps(), rows[0], plan.num_beams, plan.capacity, plan.pad, None)
            state, no_speech = loop(params, encoder_states, *map(on_device, rows), start)
            sequences, scores, longest = beam.best_sequences(JaxOps(), state)
            sequences, logprobs = on_device(np.asarray(sequences)[:, :longest], np.int32), None
        else:
            copies = plan.row_copies(partial(_same_rows, encoder_states))
            spec = plan.loop_spec(copies, room_step=ROOM_STEP)
            # one row per input: its copies share the prefix
            states = encoder_states if spec.copies == 1 else encoder_states[:: spec.copies]
            end_floors = np.asarray(plan.end_floors, np.int32)
            prefix, padding, sot_positions, end_floors = (on_device(x[:: spec.copies]) for x in (*rows, end_floors))
            capacity = prefix.shape[1] + spec.max_new_tokens
            prefix_key = ("prefix", capacity, spec.no_speech_token)
            prefix_pass = self._compiled(prefix_key, lambda: jax.jit(partial(self._prefix_pass, *prefix_key[1:])))
            last, no_speech, cache = shared_prefix_pass(
                self,
                (params, states, prefix, padding, sot_positions),
                _same_input,
                lambda: prefix_pass(params, states, prefix, padding, sot_positions),
            )
            loop = self._compiled(spec, lambda: jax.jit(partial(self._greedy_loop, spec)))
            draws = on_device(sampling_draws(_seed_of(prng_key), spec.max_new_tokens, len(plan.prefixes)))
            # inputs: one program for every temperature, and for nearby limits of new tokens
            temperature, limit = np.float32(plan.temperature), np.int32(plan.max_new_tokens)
            tokens, length, no_speech, step_scores, logprobs = loop(
                params, prefix, padding, end_floors, last, no_speech, cache, draws, temperature, limit
            )
            length = int(length)
            sequences = on_device(np.asarray(tokens)[:, :length])
            scores = tuple(step_scores[:, step] for step in range(length - plan.begin)) if plan.output_scores else None
            logprobs = on_device(np.asarray(logprobs)[:, : length - plan.begin]) if plan.output_logprobs else None
        return sequences, scores, no_speech, logprobs

    # -- pieces ----------------------------------------------------------------------------
    def _encode(self, input_features: Any, params: Any = None) -> jax.Array:
        encode = self._compiled("encode", lambda: jax.jit(partial(self.module.apply, method="encode")))
        return encode(self._params(params), on_device(input_features, np.float32)).last_hidden_state

    def _language_probabilities(self, ids: PrefixIds, encoder_states: jax.Array, params: Any = None) -> jax.Array:
        """``[batch, languages]`` softmax over the language tokens after ``<|startoftranscript|>``."""

        def probabilities(variables: Any, states: jax.Array) -> jax.Array:
            start = jnp.full((states.shape[0], 1), ids.decoder_start_token_id, jnp.int32)
            logits = self.module.apply(variables, start, states, method="decode").logits[:, -1]
            language_ids = on_device(list(ids.lang_to_id.values()), np.int32)
            return jax.nn.softmax(logits.astype(jnp.float32)[:, language_ids], axis=-1)

        key = ("detect", ids.decoder_start_token_id, tuple(ids.lang_to_id.values()))
        detect = self._compiled(key, lambda: jax.jit(probabilities))
        return detect(self._params(params), encoder_states)

    def _cached_decoder(self, params: Any, padding: jax.Array, capacity: int) -> Callable[..., Any]:
        """``decode(step_input [rows, n], cache, start) -> (hidden [rows, n, d], cache)``: one cached decoder
        pass over tokens at positions ``start .. start + n`` of rows left-padded by ``padding [rows]``."""
        columns = jnp.arange(capacity)[None, :]
        attention_mask = (columns >= padding[:, None]).astype(jnp.int32)  # [rows, capacity]: 1 on real tokens
        positions = jnp.maximum(columns - padding[:, None], 0)  # each row counts from its first real token

        def decode(step_input: jax.Array, cache: KVCache, start: Any) -> tuple[jax.Array, KVCache]:
            step_positions = jax.lax.dynamic_slice(positions, (0, start), step_input.shape)
            out = self.module.apply(
                {"params": params},
                step_input,
                attention_mask=attention_mask,
                position_ids=step_positions,
                past_key_values=cache,
                method=_decoder_pass,
            )
            return out.last_hidden_state, out.past_key_values

        return decode

    def _logits(self, params: Any, hidden: jax.Array) -> jax.Array:
        """``[rows, d]`` -> float32 ``[rows, vocab]``."""
        return self.module.apply({"params": params}, hidden, method="logits").astype(jnp.float32)

    def _prefix_pass(
        self,
        capacity: int,
        no_speech_token: int,
        params: Any,
        encoder_states: jax.Array,
        prefix: jax.Array,
        padding: jax.Array,
        sot_positions: jax.Array,
    ) -> tuple[jax.Array, jax.Array, KVCache]:
        """Run the prefix once per input (the rows of ``prefix``) into a fresh cache of ``capacity`` positions:
        ``(last logits [inputs, vocab], no_speech_probs [inputs], cache)``. Only the positions read are
        projected onto the vocabulary (a 200-token prompt would otherwise cost 200 rows of that projection)."""
        prefill = self._cached_decoder(params, padding, capacity)
        cache = self.module.apply({"params": params}, encoder_states, capacity, method="init_cache")
        hidden, cache = prefill(prefix, cache, 0)
        at_sot = hidden[jnp.arange(hidden.shape[0]), sot_positions]  # [inputs, d]
        no_speech = jax.nn.softmax(self._logits(params, at_sot), axis=-1)[:, no_speech_token]
        return self._logits(params, hidden[:, -1]), no_speech, cache

    def _copies(
        self, params: Any, padding: jax.Array, capacity: int, last: jax.Array, cache: KVCache, copies: int
    ) -> tuple[Callable[..., Any], jax.Array, KVCache]:
        """Give each input of a prefix pass ``copies`` rows: ``(step decoder over those rows, their last
        logits [rows, vocab], cache)``."""
        if copies == 1:
            return self._cached_decoder(params, padding, capacity), last, cache
        decode = self._cached_decoder(params, jnp.repeat(padding, copies), capacity)
        return decode, jnp.repeat(last, copies, axis=0), _repeat_inputs(cache, padding.shape[0], copies)

    def _greedy_loop(
        self,
        spec: LoopSpec,
        params: Any,
        prefix: jax.Array,
        padding: jax.Array,
        end_floors: jax.Array,
        last: jax.Array,
        no_speech: jax.Array,
        cache: KVCache,
        draws: jax.Array,
        temperature: jax.Array,
        limit: jax.Array,
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
        """Greedy or sampling after a prefix pass (:meth:`_prefix_pass`: its ``last`` logits, ``no_speech``
        probabilities and ``cache``, one row per input): ``prefix [inputs, begin]`` (left-padded by ``padding
        [inputs]``, each held to its earliest end ``end_floors [inputs]``: :attr:`GenerationPlan.end_floors`),
        each input decoded by ``spec.copies`` rows (a sampling row ``r`` at new token ``i`` draws ``draws[i,
        r]``), at most ``limit <= spec.max_new_tokens`` new tokens ->
        ``(tokens [b, capacity], length, no_speech_probs [b], scores [b, max_new_tokens or 0, vocab], logprobs
        [b, max_new_tokens or 0])`` with ``b = inputs * copies``; ``tokens[:, :length]`` is the result. Traced
        once per compilation (``_loop_traces`` counts it)."""
        self._loop_traces = getattr(self, "_loop_traces", 0) + 1
        ops, rules, copies = JaxOps(), spec.rules, spec.copies
        masks = rules.masks(ops, last, jnp.repeat(end_floors, copies)[:, None])
        batch, begin = prefix.shape[0] * copies, prefix.shape[1]
        capacity = begin + spec.max_new_tokens
        decode, last, cache = self._copies(params, padding, capacity, last, cache, copies)
        no_speech = jnp.repeat(no_speech, copies)
        prefix = jnp.repeat(prefix, copies, axis=0)
        tokens = jnp.full((batch, capacity), spec.pad, jnp.int32).at[:, :begin].set(prefix)
        scores = jnp.zeros((batch, spec.max_new_tokens if spec.want_scores else 0, self.config.vocab_size))
        logprobs = jnp.zeros((batch, spec.max_new_tokens if spec.want_logprobs else 0))

        def step(state: tuple) -> tuple:
            tokens, length, cache, logits, finished, scores, logprobs = state
            logits = rules.apply(ops, logits, tokens, length, begin, masks)
            draw = jax.lax.dynamic_index_in_dim(draws, length - begin, keepdims=False)[:, None]
            next_tokens = jnp.where(finished, spec.pad, _pick(logits, spec.sampling, temperature, draw))
            tokens = jax.lax.dynamic_update_slice(tokens, next_tokens[:, None], (0, length))
            if spec.want_scores:
                scores = jax.lax.dynamic_update_slice(scores, logits[:, None], (0, length - begin, 0))
            if spec.want_logprobs:
                picked = (
                    jnp.take_along_axis(logits, next_tokens[:, None], axis=1) - jax.nn.logsumexp(logits, -1)[:, None]
                )
                logprobs = jax.lax.dynamic_update_slice(logprobs, picked, (0, length - begin))
            hidden, cache = decode(next_tokens[:, None], cache, length)
            finished = finished | (next_tokens == spec.eos)
            return tokens, length + 1, cache, self._logits(params, hidden[:, -1]), finished, scores, logprobs

        def running(state: tuple) -> jax.Array:
            _, length, _, _, finished, *_ = state
            return (length < begin + limit) & ~jnp.all(finished)

        start = (
            tokens,
            jnp.asarray(begin, jnp.int32),
            cache,
            last,
            jnp.zeros(batch, bool),
            scores,
            logprobs,
        )
        tokens, length, _, _, _, scores, logprobs = jax.lax.while_loop(running, step, start)
        return tokens, length, no_speech, scores, logprobs

    def _beam_loop(
        self,
        spec: LoopSpec,
        params: Any,
        encoder_states: jax.Array,
        prefix: jax.Array,
        padding: jax.Array,
        sot_positions: jax.Array,
        state: beam.BeamState,
    ) -> tuple[beam.BeamState, jax.Array]:
        """Beam search from ``state`` (:func:`whisper_core.decoding.beam.initial_state`) until no beam can
        improve: ``(final state, no_speech_probs [b])``. Every beam is a row of the model batch
        (``[b * beams]``); after each step the self-attention cache follows the beams that survived."""
        self._loop_traces = getattr(self, "_loop_traces", 0) + 1
        ops, rules, beams = JaxOps(), spec.rules, spec.num_beams
        masks = rules.masks(ops, encoder_states)
        batch, begin = prefix.shape
        capacity = begin + spec.max_new_tokens
        rows = batch * beams
        last, no_speech, cache = self._prefix_pass(
            capacity, spec.no_speech_token, params, encoder_states, prefix, padding, sot_positions
        )
        decode, last, cache = self._copies(params, padding, capacity, last, cache, beams)
        offsets = jnp.arange(batch)[:, None] * beams

        def advance(state: beam.BeamState, logits: jax.Array, length: jax.Array) -> beam.BeamState:
            return beam.advance(ops, spec, masks, state, logits, length=length, begin=begin)

        def step(carry: tuple) -> tuple:
            state, length, cache = carry
            order = (state.source_beam + offsets).reshape(-1)  # [b * beams] rows of the old cache
            cache = _reorder_self_attention(cache, order)
            step_input = jax.lax.dynamic_slice_in_dim(state.running.reshape(rows, capacity), length - 1, 1, axis=1)
            hidden, cache = decode(step_input, cache, length - 1)
            return advance(state, self._logits(params, hidden[:, -1]), length), length + 1, cache

        def running(carry: tuple) -> jax.Array:
            state, length, _ = carry
            return beam.continuing(ops, state)[0, 0] & (length < capacity)

        length = jnp.asarray(begin, jnp.int32)
        state = advance(jax.tree_util.tree_map(jnp.asarray, state), last, length)
        state, _, _ = jax.lax.while_loop(running, step, (state, length + 1, cache))
        return state, no_speech


def _decoder_pass(module: Any, input_ids: jax.Array, **kwargs: Any) -> Any:
    """The decoder's hidden states without the vocabulary projection (``module.apply(method=...)``)."""
    return module.model.decoder(input_ids, encoder_hidden_states=None, **kwargs)


def _same_rows(encoder_states: jax.Array, i: int, j: int) -> bool:
    """Whether two rows of the encoder states are equal, compared in NumPy (see ``_search``)."""
    states = np.asarray(encoder_states)
    return bool(np.array_equal(states[i], states[j]))


def _same_input(kept: Any, given: Any) -> bool:
    """Whether a prefix pass's input equals a kept one's: arrays by value (in NumPy, see ``_search``), the
    parameters by identity (a tree compared by value would cost what the pass saves)."""
    if not isinstance(kept, jax.Array):
        return kept is given
    same_kind = isinstance(given, jax.Array) and kept.shape == given.shape and kept.dtype == given.dtype
    return same_kind and bool(np.array_equal(np.asarray(kept), np.asarray(given)))


def _repeat_inputs(cache: KVCache, inputs: int, copies: int) -> KVCache:
    """The cache with each input's self-attention rows (one per head) repeated ``copies`` times, input by
    input; the copies share the input's cross-attention rows (see ``FlaxWhisperAttention._attend_copies``)."""

    def repeat(x: jax.Array) -> jax.Array:
        per_input = x.reshape(inputs, -1, *x.shape[1:])  # [inputs, heads, ...]
        return jnp.repeat(per_input, copies, axis=0).reshape(-1, *x.shape[1:])

    return KVCache(tuple((repeat(k), repeat(v), *cross) for k, v, *cross in cache.layers), cache.index)


def _reorder_self_attention(cache: KVCache, order: jax.Array) -> KVCache:
    """The cache with its self-attention rows in ``order`` (model rows; the cache has one row per head of
    each); cross-attention rows are left alone (every beam of an item attends to the same audio)."""
    heads = cache.layers[0][0].shape[0] // order.shape[0]
    rows = (order[:, None] * heads + jnp.arange(heads)).reshape(-1)
    layers = tuple((k[rows], v[rows], *cross) for k, v, *cross in cache.layers)
    return KVCache(layers, cache.index)


def _seed_of(prng_key: jax.Array | None) -> int:
    """The integer seed a key's data spell (``PRNGKey(s)``: ``[0, s]`` -> ``s``; None: 0), read on the host."""
    if prng_key is None:
        return 0
    words = np.asarray(jax.random.key_data(prng_key), np.uint64).ravel()
    return int(sum(int(word) << (32 * place) for place, word in enumerate(words[::-1])))


def _pick(logits: jax.Array, top_k: int | None, temperature: jax.Array, draw: jax.Array) -> jax.Array:
    """Greedy argmax (``top_k`` None), or a sample at ``temperature`` from the ``top_k`` most likely tokens (0: from all
    of them) by :func:`~whisper_core.decoding.invert_distribution` at each row's ``draw [rows, 1]`` (uniform in [0, 1)),
    in float32, as the PyTorch and TF loops do: ``jax.random.categorical`` draws a Gumbel number per token (threefry
    over the vocabulary: 3.9 against 1.0 ms a step at five rows, base, one-off script, 2026-12-06)."""
    ops = JaxOps()
    if top_k is None:
        return first_argmax(ops, logits)
    logits = logits / temperature
    if top_k:
        logits = keep_top_k(ops, logits, top_k)
    return invert_distribution(ops, logits, jax.nn.softmax(logits, axis=-1), draw)
