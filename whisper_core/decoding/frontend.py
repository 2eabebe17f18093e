"""``generate`` and ``detect_language`` as users call them (transformers 4.57's names), written once.

Each backend's generation mixin subclasses :class:`GenerationFrontEnd` and supplies only what needs
its framework, as methods:

- ``_encode(input_features, **model_options)``: the encoder's last hidden state ``[batch, frames, d]``;
- ``_as_tensor(array)``: a given encoder output as the framework's tensor (unchanged by default);
- ``_language_probabilities(ids, encoder_states, **model_options)``: ``[batch, languages]``, the softmax
  over ``ids.lang_to_id`` right after ``<|startoftranscript|>``;
- ``_search(plan, encoder_states, **model_options, **search_options)``: the decoding loop of a
  :class:`~whisper_core.decoding.plan.GenerationPlan`, giving ``(sequences [batch, length], scores,
  no_speech_probs [batch], logprobs [batch, generated steps])`` (scores and logprobs None unless asked for);
- ``_to_host(tensor)`` and ``_from_host(array, like)``: to NumPy and back;
- ``_inference()``: a context in which no gradients are tracked (nothing by default).

What is the same everywhere lives here: which generation config, reading a given ``encoder_outputs``
(:func:`~whisper_core.outputs.as_encoder_output`), cutting the features for language
detection, resolving the options into a plan (:func:`~whisper_core.decoding.plan.plan_generation`,
which also refuses unknown keywords) and what is returned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, ClassVar

from ..outputs import as_encoder_output
from .plan import plan_generation
from .prefix import PrefixIds


class GenerationFrontEnd:
    """``generate`` and ``detect_language`` over a backend's hooks (see the module docstring)."""

    # The backend's own keywords, beside transformers' ones: ``model_option_names`` reach every hook (the
    # weights to run with, where the framework passes them in), ``search_option_names`` only ``_search``
    # (its random state). Other keywords go to ``plan_generation``.
    model_option_names: ClassVar[tuple[str, ...]] = ()
    search_option_names: ClassVar[tuple[str, ...]] = ()

    def detect_language(
        self,
        input_features: Any = None,
        encoder_outputs: Any = None,
        generation_config: Any = None,
        num_segment_frames: int = 3000,
        *,
        return_probabilities: bool = False,
        **model_options: Any,
    ) -> Any:
        """The most likely language token id per input (``[batch]``, int64 as transformers' PyTorch model
        returns it where the framework has int64), or with ``return_probabilities`` the probability of each
        language per input (``{"en": 0.97, ...}``). Longer features are cut to their first
        ``num_segment_frames`` frames (30 s)."""
        unknown = sorted(set(model_options) - set(self.model_option_names))
        if unknown:
            raise TypeError(f"detect_language() got unexpected keyword arguments: {unknown}")
        ids = PrefixIds.for_language_detection(generation_config or self.generation_config)
        if input_features is not None:
            input_features = input_features[..., :num_segment_frames]
        with self._inference():
            encoder_states = self._encoder_states(input_features, encoder_outputs, **model_options)
            probabilities = self._to_host(self._language_probabilities(ids, encoder_states, **model_options))
        detected = ids.detected(probabilities, return_probabilities)
        return detected if return_probabilities else self._from_host(detected, encoder_states)

    def generate(
        self,
        input_features: Any = None,
        generation_config: Any = None,
        *,
        encoder_outputs: Any = None,
        language: str | Sequence[str | None] | None = None,
        task: str | None = None,
        return_timestamps: bool | None = None,
        prompt_ids: Any = None,
        max_new_tokens: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        num_beams: int | None = None,
        length_penalty: float | None = None,
        output_scores: bool | None = None,
        return_dict_in_generate: bool | None = None,
        return_segments: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Token ids ``[batch, prefix + generated]`` (greedy by default), padded with ``<|endoftext|>``.

        ``language``: a code, name or ``<|xx|>`` token, one per row, or ``None`` to detect it
        (multilingual models). ``task``: "transcribe" (default) or "translate". ``prompt_ids``: one
        ``<|startofprev|>`` prompt for every row, or a list with one (or ``None``) per row; rows are
        then left-padded and their positions counted from their first real token. ``do_sample`` draws
        with the backend's random state (its ``search_option_names``). ``num_beams > 1``: beam search with
        transformers' semantics; ``output_scores`` then gives the sequence scores ``[batch]``.
        ``return_dict_in_generate``: a :class:`~whisper_core.decoding.plan.WhisperGenerateOutput`.
        """
        model_options = {name: kwargs.pop(name) for name in self.model_option_names if name in kwargs}
        search_options = {name: kwargs.pop(name) for name in self.search_option_names if name in kwargs}
        config = generation_config or self.generation_config
        with self._inference():
            encoder_states = self._encoder_states(input_features, encoder_outputs, **model_options)
            ids = PrefixIds.from_generation_config(config)
            plan = plan_generation(
                config,
                self.config,
                encoder_states.shape[0],
                lambda: self._to_host(self._language_probabilities(ids, encoder_states, **model_options)).argmax(-1),
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
            sequences, scores, no_speech, logprobs = self._search(
                plan, encoder_states, **model_options, **search_options
            )
            if not plan.return_dict:
                return sequences
            return plan.output(sequences, self._to_host(sequences), scores, no_speech, logprobs)

    def encoder_states(self, input_features: Any, **model_options: Any) -> Any:
        """The encoder's last hidden state ``[batch, frames, d]`` of ``input_features``, computed as
        ``generate`` computes it (compiled where the backend compiles, without gradients). Pass it back as
        ``generate(encoder_outputs=...)`` to decode the same audio several times (temperature fallback,
        ``best_of`` draws) with one encoder pass."""
        with self._inference():
            return self._encoder_states(input_features, None, **model_options)

    def _encoder_states(self, input_features: Any, encoder_outputs: Any, **model_options: Any) -> Any:
        """``[batch, frames, d]``: the last hidden state of ``encoder_outputs`` (any form the models take)
        when given, else the encoder run on ``input_features``."""
        if encoder_outputs is not None:
            return self._as_tensor(as_encoder_output(encoder_outputs).last_hidden_state)
        if input_features is None:
            raise ValueError("give input_features (or encoder_outputs)")
        return self._encode(input_features, **model_options)

    def _as_tensor(self, array: Any) -> Any:
        """A given encoder output as the framework's tensor (frameworks that take any array leave it)."""
        return array

    def _inference(self) -> contextlib.AbstractContextManager:
        """The framework's no-gradient context around decoding (none needed where nothing is traced)."""
        return contextlib.nullcontext()
