"""PyTorch ``generate`` and ``detect_language`` for Whisper, driven by the shared decoding rules.

The rules (suppression, timestamp rules, prefixes, language tokens, beam bookkeeping), the resolution
of the options and the public methods come from :mod:`whisper_core.decoding`; this module supplies
the torch array ops and the loops. Unlike the TF and Flax loops, each search (greedy/sampling, beam)
runs one Python step per token, and stops as soon as every row has ended: the prefix is decoded once by
the model's own forward pass, then each token by :func:`decode_step` over a :class:`StaticCache`
(self-attention keys/values preallocated for the whole loop, ``max_target_positions`` when compiled,
and written in place at the step's position; cross-attention keys/values from the prefix pass, one
copy per input that sampling draws or beams share), so every step has the same shapes.
That step runs the float32 ``nn.Linear`` layers through oneDNN and an int8 self-attention's query, key
and value as one product (:func:`step_weights`); it calls any other module as it is; it runs eagerly, or
``torch.compile``d when asked (:func:`use_compiled_step`).
"""

from __future__ import annotations

import functools
import os
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from weights_bridge import cache_home
from whisper_core.decoding import (
    GenerationFrontEnd,
    GenerationPlan,
    LoopSpec,
    PrefixIds,
    beam,
    first_argmax,
    invert_distribution,
    sampling_draws,
    shared_prefix_pass,
)

from .int8 import Int8Linear

# The switch for the compiled decode step (``use_compiled_step``), and its default: off, because it
# does not pay. Measured at batch 1 on this 2-core CPU (2026-12-02): tiny.en 10.8 ms/token eager, 11.5
# compiled; base 19.9-24.6 eager, 19.9-21.3 compiled; compiling costs ~54 s (tiny.en) and ~26 s (base)
# with an empty on-disk cache, ~7 s and ~2 s with a warm one, so at best thousands of tokens repay it.
COMPILE_VARIABLE = "WHISPER_MB_TORCH_COMPILE"
COMPILE_DEFAULT = "0"
# The row count oneDNN packs the decoder's weights for (step_weights): one packing serves every step of
# two or more rows (a packing for 8 rows served 3 and 8 rows as well as one for 1500; one for 1 row was slower).
PACKING_ROWS = 8


@dataclass
class StepWeights:
    """What :func:`decode_step` multiplies by in place of calling some of the model's modules
    (:func:`step_weights`); a module it does not list is called as it is."""

    # A linear module -> the weight oneDNN multiplies by: the module's own, or a packed copy for several rows.
    linears: dict[nn.Module, torch.Tensor] = field(default_factory=dict)
    # A self-attention -> one int8 linear whose output is its query (already scaled), key and value.
    query_key_value: dict[nn.Module, Int8Linear] = field(default_factory=dict)


# Each model's step weights (per packing: one row, several; both share the fused query/key/value products),
# with the weights they were made from, beside the model rather than in it: oneDNN's packed tensors have no
# storage, so a model holding them could not be deep-copied, pickled or saved whole.
_STEP_WEIGHTS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, dict[bool, StepWeights]]] = weakref.WeakKeyDictionary()


class TorchOps:
    """:class:`whisper_core.decoding.beam.BeamOps` over torch tensors."""

    def constant(self, values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(values, device=like.device)

    def where(self, condition: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        return torch.where(condition, x, y)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=-1, keepdim=True)

    def max(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=-1, keepdim=True)  # without max's indices: 9 against 130 us over [5, 51865]

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
        return x.amin(dim=-1, keepdim=True)

    def any(self, x: torch.Tensor) -> torch.Tensor:
        return x.any(dim=-1, keepdim=True)

    def all_true(self, x: torch.Tensor) -> bool:
        return bool(x.all())

    # -- greedy pick (first_argmax) ------------------------------------------------------------
    def argmax(self, x: torch.Tensor) -> torch.Tensor:
        """torch's argmax already takes the first maximum and counts a NaN as the maximum, in one fast
        pass; its int64 indices are torch's token dtype."""
        return x.argmax(dim=-1)

    # -- sampling (invert_distribution) --------------------------------------------------------
    def cumsum(self, x: torch.Tensor) -> torch.Tensor:
        return x.cumsum(dim=-1)

    def positions(self, like: torch.Tensor) -> torch.Tensor:
        return torch.arange(like.shape[-1], device=like.device)  # int64, torch's token dtype


class WhisperGenerationMixin(GenerationFrontEnd):
    """``generate`` and ``detect_language`` (:class:`~whisper_core.decoding.frontend.GenerationFrontEnd`) for
    :class:`~whisper_pt.modeling.WhisperForConditionalGeneration`. ``do_sample`` draws from ``generate(...,
    seed=s)`` as TensorFlow's ``seed=s`` and JAX's ``prng_key=PRNGKey(s)`` do, the same tokens in all three
    up to float rounding (:func:`~whisper_core.decoding.sampling_draws`); or from ``generator=`` (a
    ``torch.Generator``), else torch's global generator, which then give each call a seed of its own,
    advancing as ``torch.rand`` would."""

    search_option_names = ("generator", "seed")

    def _inference(self) -> Any:
        return torch.inference_mode()

    def _to_host(self, tensor: torch.Tensor) -> np.ndarray:
        return tensor.cpu().numpy()

    def _from_host(self, array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(array).to(like.device)

    def _search(
        self,
        plan: GenerationPlan,
        encoder_states: torch.Tensor,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor | None]:
        """Run the plan's search: ``(sequences [batch, length], scores, no_speech_probs [batch], logprobs)``."""
        device = encoder_states.device
        inputs = (
            encoder_states,
            torch.tensor(plan.prefixes, device=device),
            torch.tensor(plan.padding, device=device),
            torch.tensor(plan.sot_positions, device=device),
        )
        if plan.num_beams > 1:
            start = beam.initial_state(
                TorchOps(), np.asarray(plan.prefixes), plan.num_beams, plan.capacity, plan.pad, encoder_states
            )
            state, no_speech = self._beam_loop(plan.loop_spec(), *inputs, start)
            sequences, scores, longest = beam.best_sequences(TorchOps(), state)
            sequences, logprobs = sequences[:, :longest], None
        else:
            spec = plan.loop_spec(plan.row_copies(lambda i, j: torch.equal(encoder_states[i], encoder_states[j])))
            inputs = (*inputs, torch.tensor(plan.end_floors, device=device))
            inputs = tuple(x[:: spec.copies] for x in inputs)  # one row per input: its copies share the prefix
            draws = torch.zeros(spec.max_new_tokens, len(plan.prefixes))  # greedy leaves the generators alone
            if spec.sampling is not None:
                if seed is None:
                    seed = int(torch.randint(2**63 - 1, (), generator=generator))
                draws = torch.from_numpy(sampling_draws(seed, spec.max_new_tokens, len(plan.prefixes)))
            tokens, length, no_speech, scores, logprobs = self._greedy_loop(spec, *inputs, draws, plan.temperature)
            sequences = tokens[:, :length]
        return sequences, scores, no_speech, logprobs

    # -- pieces ----------------------------------------------------------------------------
    def _encode(self, input_features: torch.Tensor) -> torch.Tensor:
        input_features = input_features.to(device=self.device, dtype=self.dtype)
        return self.model.encoder(input_features).last_hidden_state

    def _language_probabilities(self, ids: PrefixIds, encoder_states: torch.Tensor) -> torch.Tensor:
        """``[batch, languages]`` softmax over the language tokens after ``<|startoftranscript|>``."""
        start = torch.full((encoder_states.shape[0], 1), ids.decoder_start_token_id, device=encoder_states.device)
        logits = self(encoder_outputs=(encoder_states,), decoder_input_ids=start, use_cache=False).logits[:, -1]
        language_ids = torch.tensor(list(ids.lang_to_id.values()), device=logits.device)
        return torch.softmax(logits.float()[:, language_ids], dim=-1)

    def _decode_prefix(
        self, encoder_states: torch.Tensor, prefix: torch.Tensor, padding: torch.Tensor, capacity: int, copies: int = 1
    ) -> tuple[torch.Tensor, StaticCache]:
        """Run the prefix rows (left-padded by ``padding [rows]``) through the model's own forward pass:
        ``(last hidden states [rows, begin, d], the static cache holding the prefix)``. The prefix is
        decoded once per call (once per window inside ``sharing_prefix_passes``), so the plain forward pass
        (its masks and positions) is the reference here; the loops project only the positions they read (a
        prompt of 200 tokens would otherwise cost 200 rows of the vocabulary projection). The cache serves
        ``copies`` decoding rows per input row (sampling draws, beams): they share its cross-attention
        keys/values. It holds ``capacity`` positions, or ``max_target_positions`` for the compiled step (the
        same shapes whatever the prompt and ``max_new_tokens``, so one compilation serves every call)."""
        begin = prefix.shape[1]
        columns = torch.arange(begin, device=padding.device)[None, :]
        extra = {}
        if bool((padding > 0).any()):  # each row counts from its first real token; padding is masked
            extra = {
                "decoder_attention_mask": (columns >= padding[:, None]).long(),
                "decoder_position_ids": (columns - padding[:, None]).clamp(min=0),
            }
        out = shared_prefix_pass(
            self,
            (encoder_states, prefix, padding),
            _same_tensor,
            lambda: self.model(encoder_outputs=(encoder_states,), decoder_input_ids=prefix, use_cache=True, **extra),
        )
        if use_compiled_step(self):  # bucketed prefixes (``bucket_prefix``) may need more than the model's positions
            capacity = max(self.config.max_target_positions, capacity)
        cache = StaticCache.from_prefix(out.past_key_values, padding, capacity, copies)
        return out.last_hidden_state, cache

    def _no_speech_probs(self, hidden: torch.Tensor, sot_positions: torch.Tensor, token: int) -> torch.Tensor:
        """``[rows]`` probability of ``<|nospeech|>`` right after each row's ``<|startoftranscript|>``, from
        the prefix's hidden states ``[rows, begin, d]``."""
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return torch.softmax(self.proj_out(hidden[rows, sot_positions]).float(), dim=-1)[:, token]

    def _step_function(self, cache: StaticCache) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """``step(tokens [rows], position) -> logits [rows, vocab]`` over ``cache``: the compiled decode
        step when :func:`use_compiled_step` says so, else the eager one: also when compiling fails, which
        includes a ninth shape (torch's ``recompile_limit``: batch sizes times beams), after which this
        model decodes eagerly."""
        compiled = use_compiled_step(self) and cache.self_k[0].shape[2] >= self.config.max_target_positions
        weights = None if compiled else step_weights(self, rows=cache.self_k[0].shape[0])

        def step(tokens: torch.Tensor, position: int) -> torch.Tensor:
            nonlocal compiled, weights
            at = torch.tensor(position, device=tokens.device)
            tokens = tokens.contiguous()  # a beam column's stride changes with the capacity: a recompile
            if compiled:
                try:
                    return _compiled_decode_step()(self, tokens, at, cache, StepWeights())
                except Exception as error:  # any compiler failure: fall back, and say so once
                    warnings.warn(f"torch.compile of the decode step failed, decoding eagerly: {error}", stacklevel=2)
                    self._torch_compile_failed = True
                    compiled = False
                    weights = step_weights(self, rows=cache.self_k[0].shape[0])
            return decode_step(self, tokens, at, cache, weights, written=position + 1)

        return step

    def _greedy_loop(
        self,
        spec: LoopSpec,
        encoder_states: torch.Tensor,
        prefix: torch.Tensor,
        padding: torch.Tensor,
        sot_positions: torch.Tensor,
        end_floors: torch.Tensor,
        draws: torch.Tensor,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, int, torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]:
        """Greedy or sampling: ``prefix [inputs, begin]`` (left-padded by ``padding [inputs]``, each held to its
        earliest end ``end_floors [inputs]``: :attr:`GenerationPlan.end_floors`), each input decoded by ``spec.copies``
        rows, a sampling row ``r`` at new token ``i`` drawing ``draws[i, r]`` -> ``(tokens [b, capacity], length,
        no_speech_probs [b], scores, logprobs)`` with ``b = inputs * copies``; ``tokens[:, :length]`` is the result,
        ``scores`` the processed logits ``[b, vocab]`` of each step and ``logprobs [b, steps]`` the picked tokens'
        log-probabilities under them, when asked for. Stops as soon as every row has ended."""
        ops, rules, copies = TorchOps(), spec.rules, spec.copies
        # no row held: no rule to apply at every step (an eager step pays for each operation)
        held = end_floors.repeat_interleave(copies)[:, None] if bool(end_floors.any()) else None
        masks = rules.masks(ops, encoder_states, held)
        batch, begin = prefix.shape[0] * copies, prefix.shape[1]
        capacity = begin + spec.max_new_tokens
        hidden, cache = self._decode_prefix(encoder_states, prefix, padding, capacity, copies)
        no_speech = self._no_speech_probs(hidden, sot_positions, spec.no_speech_token).repeat_interleave(copies)
        step = self._step_function(cache)
        tokens = torch.full((batch, capacity), spec.pad, dtype=torch.long, device=prefix.device)
        tokens[:, :begin] = prefix.repeat_interleave(copies, dim=0)
        finished = torch.zeros(batch, dtype=torch.bool, device=prefix.device)
        scores, logprobs = [], []
        length, last = begin, self.proj_out(hidden[:, -1]).repeat_interleave(copies, dim=0)
        while True:
            logits = rules.apply(ops, last.float(), tokens, length, begin, masks)
            if spec.want_scores:
                scores.append(logits)
            draw = draws[length - begin, :, None]
            next_tokens = torch.where(finished, spec.pad, _pick(logits, spec.sampling, temperature, draw))
            if spec.want_logprobs:
                logprobs.append(logits.gather(1, next_tokens[:, None])[:, 0] - torch.logsumexp(logits, dim=-1))
            tokens[:, length] = next_tokens
            finished |= next_tokens == spec.eos
            length += 1
            if length == capacity or bool(finished.all()):
                return tokens, length, no_speech, tuple(scores), torch.stack(logprobs, 1) if logprobs else None
            last = step(next_tokens, length - 1)

    def _beam_loop(
        self,
        spec: LoopSpec,
        encoder_states: torch.Tensor,
        prefix: torch.Tensor,
        padding: torch.Tensor,
        sot_positions: torch.Tensor,
        state: beam.BeamState,
    ) -> tuple[beam.BeamState, torch.Tensor]:
        """Beam search from ``state`` (:func:`whisper_core.decoding.beam.initial_state`) until no beam can
        improve: ``(final state, no_speech_probs [b])``. Every beam is a row of the model batch
        (``[b * beams]``); after each step the cache rows follow the beams that survived."""
        ops, rules, beams = TorchOps(), spec.rules, spec.num_beams
        masks = rules.masks(ops, encoder_states)
        batch, begin = prefix.shape
        capacity = begin + spec.max_new_tokens
        rows = batch * beams
        hidden, cache = self._decode_prefix(encoder_states, prefix, padding, capacity, copies=beams)
        no_speech = self._no_speech_probs(hidden, sot_positions, spec.no_speech_token)
        step = self._step_function(cache)
        offsets = torch.arange(batch, device=prefix.device)[:, None] * beams

        def advance(state: beam.BeamState, logits: torch.Tensor, length: int) -> beam.BeamState:
            return beam.advance(ops, spec, masks, state, logits, length=length, begin=begin)

        length = begin
        state = advance(state, self.proj_out(hidden[:, -1]).repeat_interleave(beams, dim=0), length)
        length += 1
        while beam.should_continue(ops, state):
            cache.reorder((state.source_beam + offsets).reshape(-1), length - 1)  # [b * beams] old rows
            step_input = state.running.reshape(rows, capacity)[:, length - 1]
            state = advance(state, step(step_input, length - 1), length)
            length += 1
        return state, no_speech


@dataclass
class StaticCache:
    """The decoder's KV cache at a fixed size, so every decode step has the same shapes (and a compiled
    step compiles once): self-attention keys/values preallocated for ``capacity`` positions and written
    in place at the step's position; cross-attention keys/values computed once, on the prefix pass, one
    copy per input: the consecutive rows decoding the same input (sampling draws, beams) share it, which
    saves a step reading the same 1500 frames' keys/values once per row (at five draws of base, 120 MB
    a step, most of its cross-attention time).

    The cross-attention layout follows the rows per input (:func:`_cross_attention`): with one row per
    input (greedy decoding, batched pieces) keys by frame and values transposed, so that each product is
    a matrix times a vector; with several (draws, beams) keys transposed and values by frame, so that the
    copies multiply as one small matrix. Base's whole decode step, caches flushed (one-off script, the two
    layouts alternated, 2026-12-07): one row per input unchanged at one input (11.3-11.6 ms), 12.7 -> 12.0
    ms at three, 23.9 -> 19.2 at eight; the cross-attention alone at five copies of one input 2.9 ms the
    other way, 3.4 this way."""

    self_k: list[torch.Tensor]  # per layer [rows, heads, capacity, head_dim]
    self_v: list[torch.Tensor]
    # per layer, rows = inputs x copies: keys [inputs, heads, frames, head_dim] and values [inputs, heads,
    # head_dim, frames] when ``by_frame`` (one row per input), else keys transposed and values by frame
    cross_k: list[torch.Tensor]
    cross_v: list[torch.Tensor]
    first: torch.Tensor  # [rows] column of each row's first real token (its left padding)
    by_frame: bool = True

    @classmethod
    def from_prefix(cls, past: Any, padding: torch.Tensor, capacity: int, copies: int = 1) -> StaticCache:
        """From the plain forward pass's cache over the inputs (per layer ``(self_k, self_v, cross_k,
        cross_v)``): the prefix's keys/values copied into buffers of ``capacity`` positions, ``copies``
        rows per input; the cross-attention keys/values contiguous, in the layout that
        :func:`_cross_attention` reads fastest for ``copies`` rows per input."""

        def buffer(prefix_kv: torch.Tensor) -> torch.Tensor:
            inputs, heads, begin, head_dim = prefix_kv.shape
            out = prefix_kv.new_zeros(inputs * copies, heads, capacity, head_dim)
            out[:, :, :begin] = prefix_kv.repeat_interleave(copies, dim=0)
            return out

        by_frame = copies == 1
        return cls(
            self_k=[buffer(layer[0]) for layer in past],
            self_v=[buffer(layer[1]) for layer in past],
            cross_k=[(layer[2] if by_frame else layer[2].transpose(2, 3)).contiguous() for layer in past],
            cross_v=[(layer[3].transpose(2, 3) if by_frame else layer[3]).contiguous() for layer in past],
            first=padding.to(torch.long).repeat_interleave(copies),
            by_frame=by_frame,
        )

    def reorder(self, order: torch.Tensor, length: int) -> None:
        """Rows of the self-attention buffers to ``order [rows]`` (old row of each new row), in place and
        only over the ``length`` positions written so far. Beams reorder only among the rows of their
        own input, whose cross-attention keys/values are the same, so those stay as they are."""
        for buffer in (*self.self_k, *self.self_v):
            buffer[:, :, :length] = buffer[:, :, :length][order]


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a prefix pass's input equals a kept one's, by value."""
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


def decode_step(
    model: Any,
    tokens: torch.Tensor,
    position: torch.Tensor,
    cache: StaticCache,
    weights: StepWeights,
    written: int | None = None,
) -> torch.Tensor:
    """One decoder step over the static cache: ``tokens [rows]`` at ``position`` (a 0-d tensor, so a
    compiled step sees the same input at every step) -> ``logits [rows, vocab]``; writes the step's
    self-attention keys/values into ``cache`` at ``position``. ``weights`` (:func:`step_weights`) holds the
    fused query/key/value products and the linears that run through oneDNN; the others are called as
    modules. ``written`` (``position + 1``, eager steps only): self-attention reads only the positions
    written so far, not the whole buffer (base, three rows, 448 positions, six layers: 0.35-0.42 against
    1.5 ms a step, one-off script, 2026-12-05)."""
    decoder = model.model.decoder
    columns = torch.arange(cache.self_k[0].shape[2] if written is None else written, device=tokens.device)
    visible = (columns <= position) & (columns >= cache.first[:, None])  # [rows, capacity]
    mask = visible[:, None, None, :]  # [rows, 1, 1, capacity]: causal, minus each row's left padding
    places = (position - cache.first).clamp(min=0)  # [rows]: each row counts from its first real token
    x = decoder.embed_tokens(tokens) + decoder.embed_positions.weight[places]  # [rows, d]
    for index, layer in enumerate(decoder.layers):
        h = layer.self_attn_layer_norm(x)
        k_cache, v_cache = cache.self_k[index], cache.self_v[index]
        x = x + _self_attention(layer.self_attn, h, k_cache, v_cache, position, mask, weights, written)
        h = layer.encoder_attn_layer_norm(x)
        cross_k, cross_v = cache.cross_k[index], cache.cross_v[index]
        x = x + _cross_attention(layer.encoder_attn, h, cross_k, cross_v, weights, cache.by_frame)
        h = layer.activation_fn(_linear(layer.fc1, layer.final_layer_norm(x), weights))
        x = x + _linear(layer.fc2, h, weights)
    return _linear(model.proj_out, decoder.layer_norm(x), weights)


def _self_attention(
    attention: Any,
    h: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    position: torch.Tensor,
    mask: Any,
    weights: StepWeights,
    written: int | None = None,
) -> torch.Tensor:
    """Write this step's keys/values into ``k_cache, v_cache [rows, heads, capacity, head_dim]`` at
    ``position``, then attend over the first ``written`` positions, or the whole buffer (``mask`` hides the
    columns not written yet and each row's left padding). The query, key and value come from one product
    when ``weights`` fuses them."""
    fused = weights.query_key_value.get(attention)
    if fused is None:
        q = _linear(attention.q_proj, h, weights) * attention.scaling
        k, v = _linear(attention.k_proj, h, weights), _linear(attention.v_proj, h, weights)
    else:
        widths = [p.out_features for p in (attention.q_proj, attention.k_proj, attention.v_proj)]
        q, k, v = _linear(fused, h, weights).split(widths, dim=-1)
    at = position.reshape(1)
    k_cache.index_copy_(2, at, _split_heads(attention, k))
    v_cache.index_copy_(2, at, _split_heads(attention, v))
    if written is not None:
        k_cache, v_cache = k_cache[:, :, :written], v_cache[:, :, :written]
    out = F.scaled_dot_product_attention(_split_heads(attention, q), k_cache, v_cache, attn_mask=mask, scale=1.0)
    return _linear(attention.out_proj, out.reshape(h.shape), weights)  # out: [rows, heads, 1, hd]


def _cross_attention(
    attention: Any, h: torch.Tensor, k: torch.Tensor, v: torch.Tensor, weights: StepWeights, by_frame: bool
) -> torch.Tensor:
    """``h [rows, d]`` attending to the encoder's keys/values in :class:`StaticCache`'s layout -> ``[rows,
    d]`` (no mask: every row sees every frame). ``by_frame`` (one row per input): keys ``[rows, heads,
    frames, head_dim]`` times the query, then values ``[rows, heads, head_dim, frames]`` times the
    weights, each a matrix-vector product. Otherwise each input's consecutive rows (its copies) share its
    keys ``[inputs, heads, head_dim, frames]`` and values ``[inputs, heads, frames, head_dim]`` and attend
    as that input's queries ``[inputs, heads, copies, head_dim]``, so each frame is read once per input.
    Plain products over these layouts read the keys/values at memory speed: base, three rows, six layers,
    3.8-4.4 ms a step (keys transposed, values by frame) against 4.8-6.1 ms through
    ``scaled_dot_product_attention`` on contiguous keys/values and 5.9-7.1 ms on the forward pass's strided
    ones (one-off script, 2026-12-05)."""
    q = _linear(attention.q_proj, h, weights) * attention.scaling
    if by_frame:
        # Each vector is a row transposed ([..., n, 1] with a row stride of n): a contiguous [..., n, 1]
        # takes torch's slow path, twice the time (base, six layers, one row: 2.6 against 1.2 ms).
        q = q.view(h.shape[0], 1, attention.num_heads, attention.head_dim).transpose(1, 2)
        scores = torch.matmul(k, q.transpose(2, 3)).transpose(2, 3)  # [rows, heads, 1, frames]
        out = torch.matmul(v, scores.softmax(dim=-1).transpose(2, 3))  # [rows, heads, head_dim, 1]
        return _linear(attention.out_proj, out.view(h.shape), weights)
    inputs = k.shape[0]
    q = q.view(inputs, -1, attention.num_heads, attention.head_dim).transpose(1, 2)
    out = torch.matmul(torch.matmul(q, k).softmax(dim=-1), v)  # [inputs, heads, copies, head_dim]
    return _linear(attention.out_proj, out.transpose(1, 2).reshape(h.shape), weights)


def _split_heads(attention: Any, x: torch.Tensor) -> torch.Tensor:
    return x.view(x.shape[0], attention.num_heads, 1, attention.head_dim)  # [rows, d] -> [rows, h, 1, hd]


def step_weights(model: Any, rows: int) -> StepWeights:
    """What :func:`decode_step` multiplies by for steps of ``rows`` rows, made once per model and packing
    (one row, several) and made again when a weight or module changes: another tensor, device or dtype, an
    in-place update that torch counts (an optimizer step, ``load_state_dict``), a module swapped for
    another. A write through ``tensor.data`` is not counted: call :func:`forget_step_weights` after one.

    (1) An int8 self-attention's query, key and value in one product (:func:`_fused_query_key_value`): the
    step quantizes the layer-normed row once instead of three times and calls two products less per layer.
    A base step on jfk's states (best of three 80-step runs, before and after alternated in four process
    pairs, 2026-12-06): 7.2-8.2 -> 6.8-7.3 ms at one row and 13.3-14.6 -> 12.4-13.0 at five. The fused copy
    costs those weights again (large-v3: 150 MiB). float32 is left unfused: the same measurement showed no
    gain at one row (11.4-12.7 -> 11.6-12.3 ms) and none clear at five (14.0-14.4 -> 12.4-15.0), where a
    fused copy would cost large-v3 600 MiB.

    (2) oneDNN for the float32 linears: at one row on every decoder linear's own weight and the output
    projection's (no copy), at more rows on a oneDNN-packed copy of each (:data:`PACKING_ROWS`); none where
    oneDNN cannot serve (no oneDNN build, another device or dtype, a module that is not a plain
    ``nn.Linear``, as a quantized one). Why: on this 2-core AMD CPU (2026-12-04, base) torch's ``linear``
    (MKL) multiplies one row on one thread (as fast with one thread as with two) and a few rows at a third
    of its one-row speed: ``fc1`` takes 108 us at one row and 300-370 us at three or five. oneDNN uses both
    threads: 42 linears of a base step's shapes, read from memory in turn, take 3.9 ms a step on their own
    weights against 5.3 ms through torch, and the 51865-column projection 3.9-4.3 ms against 8 ms; packed
    weights take 110-140 us for ``fc1`` at three or five rows and the projection 4.5-5.4 ms. A whole base
    step (random cross-attention keys/values, 448 positions, alternated): 12.2 against 13.4 ms at one row
    (tiny.en 7.8 against 7.9), 17.8 against 24.1 at two, 29 against 36.5 at five. The packed copy costs the
    decoder's linears and the projection again in memory."""
    tensors = [t for m in (model.model.decoder, model.proj_out) for t in (*m.parameters(), *m.buffers())]
    key = tuple((t.data_ptr(), t.device, t.dtype, _version(t)) for t in tensors)
    key += tuple(map(id, model.model.decoder.modules()))  # a projection swapped (LoRA) changes the fusion
    kept = _STEP_WEIGHTS.get(model)
    if kept is None or kept[0] != key:
        kept = (key, {})
        _STEP_WEIGHTS[model] = kept
    made, packing = kept[1], rows > 1
    if packing not in made:
        with torch.no_grad():
            fused = next(iter(made.values())).query_key_value if made else _fused_projections(model)
            made[packing] = StepWeights(_onednn_weights(model, packing), fused)
    return made[packing]


def _fused_projections(model: Any) -> dict[nn.Module, Int8Linear]:
    """Each decoder self-attention -> its fused query/key/value product, where it has one."""
    fused = {}
    for layer in model.model.decoder.layers:
        projection = _fused_query_key_value(layer.self_attn)
        if projection is not None:
            fused[layer.self_attn] = projection
    return fused


def _onednn_weights(model: Any, packing: bool) -> dict[nn.Module, torch.Tensor]:
    """The decoder's float32 CPU ``nn.Linear`` modules and the output projection -> the weight oneDNN
    multiplies by: their own, or a packed copy (``packing``)."""
    linears = [*(m for m in model.model.decoder.modules() if isinstance(m, nn.Linear)), model.proj_out]
    eligible = [
        m for m in linears if type(m) is nn.Linear and m.weight.dtype == torch.float32 and m.weight.device.type == "cpu"
    ]
    if not eligible or not _onednn_linear_works():
        return {}
    if packing:
        return {m: torch.ops.mkldnn._reorder_linear_weight(m.weight, PACKING_ROWS) for m in eligible}
    return {m: m.weight for m in eligible}


def forget_step_weights(model: Any) -> None:
    """Drop ``model``'s step weights, so the next step makes them from its weights as they are now: after a
    write :func:`step_weights` cannot see (through ``tensor.data``)."""
    _STEP_WEIGHTS.pop(model, None)


def _fused_query_key_value(attention: Any) -> Int8Linear | None:
    """One int8 linear for ``attention``'s query, key and value projections when all three are int8 (None
    otherwise: those the step calls as they are), their outputs side by side, the query's scales and bias
    times ``attention.scaling``: a power of two for Whisper's head size (64), so the product is the one the
    step would scale afterwards, to the bit."""
    projections = (attention.q_proj, attention.k_proj, attention.v_proj)
    if not all(type(p) is Int8Linear for p in projections):
        return None
    factors = (attention.scaling, 1.0, 1.0)
    scales = torch.cat([p.weight_scales * f for p, f in zip(projections, factors, strict=True)])
    given = [p.bias for p in projections if p.bias is not None]
    bias = None
    if given:  # zeros stand for a missing bias (Whisper's key projection has none)
        parts = zip(projections, factors, strict=True)
        bias = torch.cat([given[0].new_zeros(p.out_features) if p.bias is None else p.bias * f for p, f in parts])
    return Int8Linear(torch.cat([p.weight_values for p in projections]), scales, bias)


def _version(tensor: torch.Tensor) -> int:
    """The in-place update count of ``tensor`` (-1 for an inference tensor, which keeps none)."""
    return -1 if tensor.is_inference() else tensor._version


@functools.cache
def _onednn_linear_works() -> bool:
    """Whether this torch build runs oneDNN's linear on packed and plain weights, checked once on a small
    product against ``F.linear`` (a build without oneDNN, or whose private op changed, decodes through
    ``nn.Linear``)."""
    try:
        weight, bias, x = torch.randn(8, 4), torch.randn(8), torch.randn(3, 4)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACKING_ROWS)
        expected = F.linear(x, weight, bias)
        return all(
            torch.allclose(torch.ops.mkldnn._linear_pointwise(x, w, bias, "none", [], ""), expected, atol=1e-5)
            for w in (packed, weight)
        )
    except (RuntimeError, AttributeError):
        return False


def _linear(module: nn.Module, x: torch.Tensor, weights: StepWeights) -> torch.Tensor:
    """``module(x)``, through oneDNN on the module's entry in ``weights.linears`` when it has one."""
    weight = weights.linears.get(module)
    if weight is None:
        return module(x)
    return torch.ops.mkldnn._linear_pointwise(x, weight, module.bias, "none", [], "")


def use_compiled_step(model: Any) -> bool:
    """Whether ``generate`` runs the ``torch.compile``d decode step: ``model.torch_compile`` (True/False)
    when set, else ``$WHISPER_MB_TORCH_COMPILE`` (``1``/``0``), else off (see ``COMPILE_DEFAULT``). Only for float32
    models whose decoder and output projection are plain ``nn.Linear`` (quantized modules run eagerly),
    and not again after a compile failure."""
    wanted = getattr(model, "torch_compile", None)
    if wanted is None:
        wanted = os.environ.get(COMPILE_VARIABLE, COMPILE_DEFAULT) == "1"
    linears = [module for module in model.model.decoder.modules() if isinstance(module, nn.Linear)]
    plain = all(type(module) is nn.Linear for module in [*linears, model.proj_out])
    floats = model.dtype == torch.float32
    return bool(wanted) and plain and floats and not getattr(model, "_torch_compile_failed", False)


@functools.cache
def _compiled_decode_step() -> Callable[..., torch.Tensor]:
    """:func:`decode_step` through ``torch.compile`` (inductor), at fixed shapes: the cache capacity is
    the model's ``max_target_positions`` and the position a tensor, so a step compiles once per row
    count. Inductor's on-disk caches go to ``$WHISPER_MB_HOME/torch-compilations`` (unless
    ``$TORCHINDUCTOR_CACHE_DIR`` says otherwise), so another process reuses the compiled code."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_home() / "torch-compilations"))
    return torch.compile(decode_step, dynamic=False, fullgraph=True)


def _pick(logits: torch.Tensor, top_k: int | None, temperature: float, draw: torch.Tensor) -> torch.Tensor:
    """Greedy argmax (``top_k`` None), or a sample at ``temperature`` from the ``top_k`` most likely tokens (0: from all
    of them) by :func:`~whisper_core.decoding.invert_distribution` at each row's ``draw [rows, 1]`` (uniform in [0, 1)),
    as the TF and JAX loops do: one random number per row where a Gumbel-max draw takes one per token
    (``torch.multinomial`` took 8.7 ms at five rows). The top ``k`` come from ``torch.topk``, which does not sort the
    vocabulary on CPU (the compiled loops bisect instead, :func:`keep_top_k`)."""
    ops = TorchOps()
    if top_k is None:
        return first_argmax(ops, logits)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return invert_distribution(ops, logits, torch.softmax(logits, dim=-1), draw.to(logits.device))
