"""PyTorch ``generate`` and ``detect_language`` for Whisper, driven by the shared decoding rules.

The rules (suppression, timestamp rules, prefixes, language tokens) come from
:mod:`whisper_core.decoding`; this module only supplies the torch array ops and the loop:
encode once, feed the prefix, then one token per step through the self-attention KV cache
(cross-attention keys/values are computed on the first step and reused).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from whisper_core.decoding import GenerationPlan, PrefixIds, WhisperGenerateOutput, beam, plan_generation


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


class WhisperGenerationMixin:
    """``generate`` and ``detect_language`` for :class:`~whisper_pt.modeling.WhisperForConditionalGeneration`."""

    @torch.no_grad()
    def detect_language(
        self,
        input_features: torch.Tensor | None = None,
        encoder_outputs: Any = None,
        generation_config: Any = None,
        num_segment_frames: int = 3000,
        *,
        return_probabilities: bool = False,
    ) -> torch.Tensor | list[dict[str, float]]:
        """The most likely language token id per input (``LongTensor [batch]``, as transformers), or with
        ``return_probabilities`` the probability of each language per input (``{"en": 0.97, ...}``).
        Longer features are cut to their first ``num_segment_frames`` frames (30 s)."""
        ids = PrefixIds.for_language_detection(generation_config or self.generation_config)
        if input_features is not None:
            input_features = input_features[..., :num_segment_frames]
        encoder_states = self._encoder_states(input_features, encoder_outputs)
        detected = ids.detected(self._language_probabilities(ids, encoder_states).cpu(), return_probabilities)
        return detected if return_probabilities else torch.from_numpy(detected).to(encoder_states.device)

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
        encoder_states = self._encoder_states(input_features, encoder_outputs)
        ids = PrefixIds.from_generation_config(config)
        plan = plan_generation(
            config,
            self.config,
            encoder_states.shape[0],
            lambda: self._language_probabilities(ids, encoder_states).argmax(dim=-1).cpu().numpy(),
            language=language,
            task=task,
            return_timestamps=return_timestamps,
            prompt_ids=prompt_ids,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            num_beams=num_beams,
            length_penalty=length_penalty,
            output_scores=output_scores,
            return_dict_in_generate=return_dict_in_generate,
            return_segments=return_segments,
            **kwargs,
        )
        device = encoder_states.device
        prefix = torch.tensor(plan.prefixes, device=device)
        padding = torch.tensor(plan.padding, device=device)
        no_speech = _NoSpeech(torch.tensor(plan.sot_positions, device=device), plan.ids.no_speech_token_id)
        if plan.num_beams > 1:
            sequences, scores = self._beam_search(encoder_states, prefix, padding, plan, no_speech)
        else:
            sequences, scores = self._greedy_or_sample(encoder_states, prefix, padding, plan, generator, no_speech)
        if not plan.return_dict:
            return sequences
        return plan.output(sequences, sequences.cpu().numpy(), scores, no_speech.probabilities)

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
        plan: GenerationPlan,
        generator: torch.Generator | None,
        no_speech: _NoSpeech,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        ops, rules, max_new_tokens, pad, eos = TorchOps(), plan.rules, plan.max_new_tokens, plan.pad, plan.eos
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
            if plan.output_scores:
                scores.append(logits)
            next_tokens = torch.where(finished, pad, _pick(logits, plan.sampling, generator))
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
        plan: GenerationPlan,
        no_speech: _NoSpeech,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Beam search with transformers' semantics (the bookkeeping lives in whisper_core.decoding.beam)."""
        ops, rules, num_beams = TorchOps(), plan.rules, plan.num_beams
        masks = rules.masks(ops, encoder_states)
        batch, begin = prefix.shape
        capacity = plan.capacity
        states = encoder_states.repeat_interleave(num_beams, dim=0)  # [batch * beams, frames, d]
        state = beam.initial_state(ops, np.asarray(plan.prefixes), num_beams, capacity, plan.pad, encoder_states)
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
                eos=plan.eos,
                length_penalty=plan.length_penalty,
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
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[:, 0]
