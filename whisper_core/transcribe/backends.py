"""The interface the transcription engine calls: any backend's model behind its public API, NumPy out.

Long-form transcription needs three things from a model: ``generate`` (with per-step scores and
no-speech probabilities), ``detect_language``, and one forward pass with ``output_attentions`` for
word timing. Every backend exposes them under the same names, so :class:`ModelBackend` holds the
framework-neutral part once; each backend's adapter (in :mod:`whisper_mb.adapters`, which also keeps
the list of backends) only says how to make a tensor, how to seed sampling, and how to run the forward
pass. This module imports no framework and names no backend package.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

MAX_ENCODER_GROUP = 8  # the largest batch a compiled backend's encoder runs (see ModelBackend.encode)


@dataclass(frozen=True)
class Generated:
    """One decoded row: what openai-whisper's ``DecodingResult`` carries, minus the text."""

    tokens: tuple[int, ...]  # generated ids up to (not including) <|endoftext|>
    sum_logprob: float  # log-probabilities of the generated tokens, <|endoftext|> included
    no_speech_prob: float

    @property
    def avg_logprob(self) -> float:
        """openai-whisper's average: the sum over the tokens and the closing <|endoftext|>."""
        return self.sum_logprob / (len(self.tokens) + 1)


class ModelBackend(ABC):
    """A loaded ``*ForConditionalGeneration`` of any backend, called only through its public methods."""

    name: ClassVar[str]  # the backend's registry name ("pt", "tf", "flax")
    # Backends that compile one decoding program per prefix width left-pad prompts to a few widths
    # (``generate(bucket_prefix=True)``), so a long file compiles a bounded number of programs.
    bucket_prefix: ClassVar[bool] = False

    def __init__(self, model: Any) -> None:
        self.model = model
        self.config = model.config
        self.generation_config = model.generation_config

    # -- what each framework supplies ----------------------------------------------------------
    @abstractmethod
    def tensor(self, values: np.ndarray) -> Any:
        """``values`` as the backend's tensor, where the model lives."""

    def sampling_kwargs(self, seed: int) -> dict[str, Any]:
        """The backend's way to seed ``generate(do_sample=True)``: ``seed=`` where it takes one (PyTorch,
        TensorFlow). Every backend draws the same numbers from the same seed
        (:func:`~whisper_core.decoding.sampling_draws`), so a window that falls back to sampling gets the same
        text in each."""
        return {"seed": seed}

    def forward_attentions(
        self,
        features: np.ndarray,
        tokens: np.ndarray,
        heads: Sequence[Sequence[int]],
        states: Any = None,
        logits: bool = True,
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """Logits ``[T, vocab]`` and the cross-attention weights of ``heads [n, 2]`` (layer, head)
        as ``[n, T, frames]``, from one teacher-forced pass over ``tokens [1, T]``. Given the encoder
        ``states`` of ``features`` (:meth:`encode`, one row), only the decoder runs. Without ``logits``
        (None in their place) the output projection is skipped: word times need only the attentions, and
        the projection onto the vocabulary is a quarter of the pass (PyTorch, base, 54 tokens on encoder
        states: 124 against 87 ms)."""
        if not logits:
            states = self.encode(features) if states is None else states
            out = self.model.get_decoder()(
                input_ids=self.tensor(tokens), encoder_hidden_states=states, output_attentions=True
            )
            return None, np.stack([to_numpy(out.cross_attentions[layer])[0, head] for layer, head in heads])
        audio = {"input_features": self.tensor(features)} if states is None else {"encoder_outputs": (states,)}
        out = self.model(**audio, decoder_input_ids=self.tensor(tokens), output_attentions=True)
        weights = [to_numpy(out.cross_attentions[layer])[0, head] for layer, head in heads]
        return to_numpy(out.logits)[0], np.stack(weights)

    def take_rows(self, states: Any, rows: Sequence[int]) -> Any:
        """``states[rows]`` (rows may repeat) of a backend tensor, where it lives."""
        return states[np.asarray(rows)]

    # -- the framework-neutral part ------------------------------------------------------------
    def encode(self, features: np.ndarray) -> Any:
        """The encoder states of ``features [b, mels, 3000]`` (a backend tensor, left where the model
        lives), to decode one window at every temperature and draw with one encoder pass.

        A compiled backend encodes the rows in groups of a power of two up to 8 (3 rows as 2 + 1), so it
        compiles at most four encoder programs and never encodes padding: the encoder is bound by
        arithmetic, so a batch costs what its rows cost one by one (TF, base: 2.63 s for 4 rows, 0.67 s
        for 1), and padding 3 rows to 4 would cost a whole window more."""
        if not self.bucket_prefix:
            return self.model.encoder_states(self.tensor(features))
        parts, start = [], 0
        while start < len(features):
            size = min(1 << ((len(features) - start).bit_length() - 1), MAX_ENCODER_GROUP)
            parts.append(self.model.encoder_states(self.tensor(features[start : start + size])))
            start += size
        return parts[0] if len(parts) == 1 else self.join_rows(parts)

    def join_rows(self, parts: Sequence[Any]) -> Any:
        """Backend tensors concatenated along their first axis (rows), where they live."""
        raise NotImplementedError(f"{type(self).__name__} encodes in one group only")

    def detect_language(self, features: np.ndarray, states: Any = None) -> list[dict[str, float]]:
        """``features [b, mels, frames]`` -> per row, the probability of each language code; given their encoder
        ``states`` (:meth:`encode`), only the decoder runs."""
        audio = {"input_features": self.tensor(features)} if states is None else {"encoder_outputs": states}
        return self.model.detect_language(**audio, return_probabilities=True)

    def generate(
        self,
        states: Any,
        prompts: Sequence[Sequence[int] | None],
        *,
        temperature: float = 0.0,
        max_new_tokens: int,
        language: str | Sequence[str | None] | None = None,
        task: str | None = None,
        seed: int = 0,
        timestamps: bool = True,
        text_prefixes: Sequence[Sequence[int]] | None = None,
        prefix_width: int = 0,
        earliest_ends: Sequence[float | None] | None = None,
    ) -> list[Generated]:
        """Decode encoder ``states`` (:meth:`encode`, one row per prompt), with timestamps unless told not to;
        ``prompts`` are ``<|startofprev|>`` rows (or None). ``text_prefixes`` (no timestamps): per row, text
        the transcript is forced to begin with; the results hold only the tokens decoded after it.
        ``prefix_width``: the widest prefix (prompt and start tokens) the caller's later calls will carry,
        which a compiled backend pads to from now on (``generate(prefix_width=...)``). ``earliest_ends``: per
        row, the time (s) before which its transcript may not end (``generate(earliest_end=...)``)."""
        kwargs: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            kwargs = {"do_sample": True, "temperature": temperature, "top_k": 0, **self.sampling_kwargs(seed)}
        out = self.model.generate(
            encoder_outputs=states,
            language=language,
            task=task,
            return_timestamps=timestamps,
            prompt_ids=[list(prompt) if prompt else None for prompt in prompts],
            text_prefix_ids=[list(prefix) for prefix in text_prefixes] if text_prefixes else None,
            max_new_tokens=max_new_tokens,
            bucket_prefix=self.bucket_prefix,
            prefix_width=prefix_width,
            output_logprobs=True,
            earliest_end=list(earliest_ends) if earliest_ends else None,
            **kwargs,
        )
        sequences, logprobs = to_numpy(out.sequences), to_numpy(out.logprobs)
        generated = sequences[:, sequences.shape[1] - logprobs.shape[1] :]  # one log-probability per generated step
        no_speech = to_numpy(out.no_speech_probs).reshape(-1)
        eos = self.generation_config.eos_token_id
        results = []
        for row, row_logprobs, probability in zip(generated.tolist(), logprobs, no_speech, strict=True):
            end = row.index(eos) if eos in row else len(row)
            results.append(
                Generated(tuple(row[:end]), float(row_logprobs[: end + 1].sum(dtype=np.float64)), float(probability))
            )
        return results


def to_numpy(x: Any) -> np.ndarray:
    """A framework tensor on the host as NumPy (torch tensors may sit on an accelerator)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)
