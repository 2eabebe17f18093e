"""PyTorch ``generate`` and ``detect_language`` for Whisper, driven by the shared decoding rules.

The rules (suppression, timestamp rules, prefixes, language tokens, beam bookkeeping), the resolution
of the options and the public methods come from :mod:`whisper_core.decoding`; this module supplies
the torch array ops and the loops. Unlike the TF and Flax loops, each search (greedy/sampling, beam)
runs eagerly, one Python step per token: the prefix is decoded once, then one token per step through
the self-attention KV cache (cross-attention keys/values are computed on the first pass and reused),
and the loop stops as soon as every row has ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from whisper_core.decoding import GenerationFrontEnd, GenerationPlan, LoopSpec, PrefixIds, beam, first_argmax


class TorchOps:
    """:class:`whisper_core.decoding.beam.BeamOps` over torch tensors."""

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

    # -- greedy pick (first_argmax) ------------------------------------------------------------
    def argmax(self, x: torch.Tensor) -> torch.Tensor:
        """torch's argmax already takes the first maximum and counts a NaN as the maximum, in one fast
        pass; its int64 indices are torch's token dtype."""
        return x.argmax(dim=-1)


class WhisperGenerationMixin(GenerationFrontEnd):
    """``generate`` and ``detect_language`` (:class:`~whisper_core.decoding.frontend.GenerationFrontEnd`) for
    :class:`~whisper_pt.modeling.WhisperForConditionalGeneration`; ``generate(..., generator=...)`` takes a
    ``torch.Generator`` for ``do_sample``."""

    search_option_names = ("generator",)

    def _inference(self) -> Any:
        return torch.inference_mode()

    def _to_host(self, tensor: torch.Tensor) -> np.ndarray:
        return tensor.cpu().numpy()

    def _from_host(self, array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(array).to(like.device)

    def _search(
        self, plan: GenerationPlan, encoder_states: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """Run the plan's search: ``(sequences [batch, length], scores, no_speech_probs [batch])``."""
        spec = plan.loop_spec()
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
            state, no_speech = self._beam_loop(spec, *inputs, start)
            sequences, scores, longest = beam.best_sequences(TorchOps(), state)
            sequences = sequences[:, :longest]
        else:
            tokens, length, no_speech, scores = self._greedy_loop(spec, *inputs, generator)
            sequences = tokens[:, :length]
        return sequences, scores, no_speech

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

    def _cached_decoder(self, encoder_states: torch.Tensor, padding: torch.Tensor, capacity: int) -> Callable[..., Any]:
        """``decode(step_input [rows, n], cache, start)``: one cached decoder pass over tokens at positions
        ``start .. start + n`` of rows left-padded by ``padding [rows]`` (the model's own positions and
        mask when no row is padded)."""
        columns = torch.arange(capacity, device=padding.device)[None, :]
        attention_mask = (columns >= padding[:, None]).long()  # [rows, capacity]: 1 on real tokens
        positions = (columns - padding[:, None]).clamp(min=0)  # each row counts from its first real token
        padded = bool((padding > 0).any())

        def decode(step_input: torch.Tensor, cache: Any, start: int) -> Any:
            end = start + step_input.shape[1]
            extra = (
                {"decoder_attention_mask": attention_mask[:, :end], "decoder_position_ids": positions[:, start:end]}
                if padded
                else {}
            )
            return self(
                encoder_outputs=(encoder_states,),
                decoder_input_ids=step_input,
                past_key_values=cache,
                use_cache=True,
                **extra,
            )

        return decode

    def _decode_prefix(
        self, spec: LoopSpec, encoder_states: torch.Tensor, prefix: torch.Tensor, padding: torch.Tensor
    ) -> tuple[Callable[..., Any], Any]:
        """Run the prefix rows through the decoder; return the step decoder and the prefix pass."""
        capacity = prefix.shape[1] + spec.max_new_tokens
        decode = self._cached_decoder(encoder_states, padding, capacity)
        return decode, decode(prefix, None, 0)

    def _greedy_loop(
        self,
        spec: LoopSpec,
        encoder_states: torch.Tensor,
        prefix: torch.Tensor,
        padding: torch.Tensor,
        sot_positions: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, int, torch.Tensor, tuple[torch.Tensor, ...]]:
        """Greedy or sampling: ``prefix [b, begin]`` (left-padded by ``padding [b]``) -> ``(tokens [b, capacity],
        length, no_speech_probs [b], scores)``; ``tokens[:, :length]`` is the result, ``scores`` the processed
        logits ``[b, vocab]`` of each step when asked for. Stops as soon as every row has ended."""
        ops, rules = TorchOps(), spec.rules
        masks = rules.masks(ops, encoder_states)
        batch, begin = prefix.shape
        capacity = begin + spec.max_new_tokens
        decode, out = self._decode_prefix(spec, encoder_states, prefix, padding)
        no_speech = _no_speech_probs(out.logits, sot_positions, spec.no_speech_token)
        tokens = torch.full((batch, capacity), spec.pad, dtype=torch.long, device=prefix.device)
        tokens[:, :begin] = prefix
        finished = torch.zeros(batch, dtype=torch.bool, device=prefix.device)
        scores, length = [], begin
        while True:
            logits = rules.apply(ops, out.logits[:, -1].float(), tokens, length, begin, masks)
            if spec.want_scores:
                scores.append(logits)
            next_tokens = torch.where(finished, spec.pad, _pick(logits, spec.sampling, generator))
            tokens[:, length] = next_tokens
            finished |= next_tokens == spec.eos
            length += 1
            if length == capacity or bool(finished.all()):
                return tokens, length, no_speech, tuple(scores)
            out = decode(next_tokens[:, None], out.past_key_values, length - 1)

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
        (``[b * beams]``); after each step the cache follows the beams that survived."""
        ops, rules, beams = TorchOps(), spec.rules, spec.num_beams
        masks = rules.masks(ops, encoder_states)
        batch, begin = prefix.shape
        capacity = begin + spec.max_new_tokens
        rows = batch * beams
        decode, out = self._decode_prefix(
            spec,
            encoder_states.repeat_interleave(beams, dim=0),
            prefix.repeat_interleave(beams, dim=0),
            padding.repeat_interleave(beams, dim=0),
        )
        no_speech = _no_speech_probs(out.logits[::beams], sot_positions, spec.no_speech_token)
        offsets = torch.arange(batch, device=prefix.device)[:, None] * beams

        def advance(state: beam.BeamState, logits: torch.Tensor, length: int) -> beam.BeamState:
            return beam.advance(ops, spec, masks, state, logits, length=length, begin=begin)

        length = begin
        state = advance(state, out.logits[:, -1], length)
        length += 1
        while beam.should_continue(ops, state):
            order = (state.source_beam + offsets).reshape(-1)  # [b * beams] rows of the old cache
            step_input = state.running.reshape(rows, capacity)[:, length - 1 : length]
            out = decode(step_input, _reorder_cache(out.past_key_values, order), length - 1)
            state = advance(state, out.logits[:, -1], length)
            length += 1
        return state, no_speech


def _no_speech_probs(prefix_logits: torch.Tensor, sot_positions: torch.Tensor, token: int) -> torch.Tensor:
    """``[batch]`` probability of ``<|nospeech|>`` right after each row's ``<|startoftranscript|>``."""
    rows = torch.arange(prefix_logits.shape[0], device=prefix_logits.device)
    return torch.softmax(prefix_logits[rows, sot_positions].float(), dim=-1)[:, token]


def _reorder_cache(cache: Any, order: torch.Tensor) -> Any:
    """The cache with its rows in ``order`` (model rows); the cross-attention entries move with the
    self-attention ones, as this cache holds them per row."""
    return tuple(tuple(tensor[order] for tensor in layer) for layer in cache)


def _pick(logits: torch.Tensor, sampling: tuple[float, int] | None, generator: torch.Generator | None) -> torch.Tensor:
    """Greedy argmax, or a sample at ``temperature`` from the ``top_k`` most likely tokens."""
    if sampling is None:
        return first_argmax(TorchOps(), logits)
    temperature, top_k = sampling
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[:, 0]
