"""The shared ``generate`` / ``detect_language`` front end (whisper_core.decoding.frontend) over a NumPy
backend: what reaches the backend's hooks, what is refused, and what comes back."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_core import GenerationConfig, WhisperConfig
from whisper_core.decoding import GenerationFrontEnd, WhisperGenerateOutput, plan_generation, row_copies
from whisper_core.decoding.plan import PREFIX_BUCKETS

LANGUAGES = {"<|en|>": 52, "<|de|>": 54}
GENERATION = dict(
    decoder_start_token_id=51, eos_token_id=50, pad_token_id=50, no_timestamps_token_id=61, prev_sot_token_id=59,
    lang_to_id=LANGUAGES, task_to_id={"translate": 56, "transcribe": 57}, is_multilingual=True, max_length=40,
)  # fmt: skip


class NumpyModel(GenerationFrontEnd):
    """A backend whose hooks record their calls: encoder states are the features' first frame, row ``i``
    prefers language ``i % 2``, and the search returns the prefix followed by ``<|endoftext|>``."""

    model_option_names = ("weights",)
    search_option_names = ("rng",)

    def __init__(self) -> None:
        self.config = WhisperConfig(
            vocab_size=100,
            max_target_positions=40,
            decoder_start_token_id=51,
            pad_token_id=50,
            bos_token_id=50,
            eos_token_id=50,
        )
        self.generation_config = GenerationConfig(**GENERATION)
        self.calls: list[tuple[str, dict]] = []

    def _to_host(self, tensor):
        return np.asarray(tensor)

    def _from_host(self, array, like):
        return array

    def _encode(self, input_features, weights=None):
        self.calls.append(("encode", {"frames": input_features.shape[-1], "weights": weights}))
        return input_features[..., 0]

    def _language_probabilities(self, ids, encoder_states, weights=None):
        self.calls.append(("languages", {"weights": weights}))
        probabilities = np.full((encoder_states.shape[0], len(ids.lang_to_id)), 0.1)
        probabilities[np.arange(len(probabilities)), np.arange(len(probabilities)) % 2] = 0.9
        return probabilities

    def _search(self, plan, encoder_states, weights=None, rng=None):
        self.calls.append(("search", {"weights": weights, "rng": rng}))
        sequences = np.concatenate([np.asarray(plan.prefixes), np.full((len(plan.prefixes), 1), plan.eos)], axis=1)
        logprobs = np.full((len(sequences), 1), -0.5) if plan.output_logprobs else None
        return sequences, (np.zeros((len(sequences), 100)),), np.full(len(sequences), 0.25), logprobs


def test_detect_language_cuts_the_features_and_passes_the_model_options():
    model = NumpyModel()
    features = np.zeros((3, 80, 5000))
    ids = model.detect_language(features, weights="w")
    np.testing.assert_array_equal(ids, [52, 54, 52])
    assert ids.dtype == np.int64
    assert model.calls == [("encode", {"frames": 3000, "weights": "w"}), ("languages", {"weights": "w"})]
    probabilities = model.detect_language(features, return_probabilities=True)
    assert probabilities[1] == {"en": 0.1, "de": 0.9}
    with pytest.raises(TypeError, match="rng"):
        model.detect_language(features, rng=0)


def test_generate_routes_options_and_detects_only_what_is_missing():
    model = NumpyModel()
    features = np.zeros((2, 80, 3000))
    out = model.generate(features, language=[None, "de"], weights="w", rng="r", return_dict_in_generate=True)
    assert isinstance(out, WhisperGenerateOutput)
    assert out.languages == ["en", "de"]  # row 0 detected: it prefers language 0 % 2, "en"
    np.testing.assert_array_equal(out.sequences[:, -1], [50, 50])
    assert [name for name, _ in model.calls] == ["encode", "languages", "search"]
    assert model.calls[-1] == ("search", {"weights": "w", "rng": "r"})
    assert out.scores is None and out.no_speech_probs.tolist() == [0.25, 0.25]

    model.calls.clear()
    sequences = model.generate(features, language="en", output_scores=True)
    assert isinstance(sequences, np.ndarray) and sequences.tolist()[0] == [51, 52, 57, 61, 50]
    assert [name for name, _ in model.calls] == ["encode", "search"]  # nothing to detect


def test_generate_refuses_what_no_one_takes():
    model = NumpyModel()
    features = np.zeros((1, 80, 3000))
    with pytest.raises(TypeError, match=r"unsupported arguments: \['seed'\]"):
        model.generate(features, language="en", seed=1)  # another backend's keyword
    with pytest.raises(ValueError, match="beam search with sampling"):
        model.generate(features, language="en", num_beams=2, do_sample=True)
    assert [name for name, _ in model.calls] == ["encode", "encode"]  # refused before any search


def test_bucketed_prefixes_keep_the_rows_and_bound_the_shapes_of_a_long_file():
    """Over a long file the prompt grows window by window up to 223 tokens; with ``bucket_prefix`` the
    loop shapes (prefix width, new tokens) take at most one value per bucket, while the rows, where
    ``<|startoftranscript|>`` sits and the room left to generate stay those of the unpadded plan."""
    model_config = WhisperConfig(
        vocab_size=100,
        max_target_positions=448,
        decoder_start_token_id=51,
        pad_token_id=50,
        bos_token_id=50,
        eos_token_id=50,
    )
    config = GenerationConfig(**{**GENERATION, "max_length": 448})
    shapes = set()
    for length in range(0, 224, 3):
        prompt = [59, *[7] * length] if length else None
        room = min(224, 448 - (len(prompt or ()) + 4))  # the engine's max_new_tokens
        kwargs = dict(language="en", task="transcribe", prompt_ids=prompt, max_new_tokens=room)
        plain = plan_generation(config, model_config, 1, lambda: None, **kwargs)
        bucketed = plan_generation(config, model_config, 1, lambda: None, bucket_prefix=True, **kwargs)
        assert bucketed.begin in PREFIX_BUCKETS and bucketed.begin >= plain.begin
        assert bucketed.prefixes[0][bucketed.padding[0] :] == plain.prefixes[0]
        assert bucketed.prefixes[0][bucketed.sot_positions[0]] == 51
        assert bucketed.max_new_tokens == plain.max_new_tokens
        shapes.add((bucketed.begin, bucketed.max_new_tokens))
    assert len(shapes) <= len(PREFIX_BUCKETS) + 1  # the last bucket also sees the shortened room
    # a file's first window, before any prompt, asks for the width its later windows will need: one program
    kwargs = dict(language="en", task="transcribe", max_new_tokens=224)
    plain = plan_generation(config, model_config, 1, lambda: None, **kwargs)
    first = plan_generation(config, model_config, 1, lambda: None, bucket_prefix=True, prefix_width=225, **kwargs)
    assert first.begin == PREFIX_BUCKETS[-1] and first.prefixes[0][first.padding[0] :] == plain.prefixes[0]
    assert (first.begin, first.max_new_tokens) in shapes
    assert plan_generation(config, model_config, 1, lambda: None, prefix_width=225, **kwargs).begin == plain.begin


def test_encoder_states_are_what_generate_decodes():
    """``encoder_states`` runs the backend's encoder with the model options; ``generate`` given them back
    as ``encoder_outputs`` encodes nothing again and decodes the same."""
    model = NumpyModel()
    features = np.random.default_rng(0).standard_normal((2, 80, 3000))
    states = model.encoder_states(features, weights="w")
    assert model.calls == [("encode", {"frames": 3000, "weights": "w"})]
    model.calls.clear()
    given = model.generate(encoder_outputs=states, language="en", weights="w")
    assert [name for name, _ in model.calls] == ["search"]
    np.testing.assert_array_equal(given, model.generate(features, language="en", weights="w"))


def test_rows_repeating_their_input_are_found():
    """``best_of`` draws of one window arrive as consecutive copies: the loops run their prefix once."""
    states = np.repeat(np.arange(2.0)[:, None], 2, axis=0)  # inputs 0, 0, 1, 1
    prefixes, padding = [[5, 6]] * 4, [0] * 4

    def same(i: int, j: int) -> bool:
        return bool(np.array_equal(states[i], states[j]))

    assert row_copies(prefixes, padding, same) == 2
    assert row_copies(prefixes[:3], padding[:3], same) == 1  # 3 rows are no whole blocks of 2
    assert row_copies(prefixes[:2], padding[:2], same) == 2
    assert row_copies([[5, 6], [5, 6], [5, 6], [5, 7]], padding, same) == 1  # the second input's rows differ
    assert row_copies(prefixes, [0, 0, 0, 1], same) == 1
    assert row_copies(prefixes[:1], padding[:1], same) == 1
    asked = []
    assert row_copies([[5], [7]], [0, 0], lambda i, j: asked.append((i, j)) or True) == 1
    assert not asked  # the device is read only once the prefixes agree


def test_an_earliest_end_becomes_each_rows_timestamp_floor():
    """``earliest_end`` seconds -> the id of the timestamp at or before them, per row (0 where none); refused for
    beam search and without timestamps; rows held to different ends are not copies of one input."""
    model = NumpyModel()
    config, kwargs = model.generation_config, dict(language="en", return_timestamps=True)
    first = GENERATION["no_timestamps_token_id"] + 1
    plan = plan_generation(config, model.config, 3, lambda: None, earliest_end=[0.5, None, 0.0], **kwargs)
    assert plan.end_floors == (first + 25, 0, 0)
    assert plan_generation(config, model.config, 2, lambda: None, earliest_end=0.07, **kwargs).end_floors == (
        first + 3,
        first + 3,
    )
    assert plan_generation(config, model.config, 2, lambda: None, **kwargs).end_floors == (0, 0)
    with pytest.raises(ValueError, match="earliest_end is for greedy and sampling"):
        plan_generation(config, model.config, 1, lambda: None, earliest_end=1.0, num_beams=2, **kwargs)
    with pytest.raises(ValueError, match="earliest_end is for greedy and sampling"):
        plan_generation(config, model.config, 1, lambda: None, earliest_end=1.0, language="en")
    with pytest.raises(ValueError, match="2 values of earliest_end for a batch of 3"):
        plan_generation(config, model.config, 3, lambda: None, earliest_end=[1.0, 2.0], **kwargs)
    with pytest.raises(ValueError, match="finite time"):
        plan_generation(config, model.config, 1, lambda: None, earliest_end=float("nan"), **kwargs)
    past = plan_generation(config, model.config, 1, lambda: None, earliest_end=1e6, **kwargs)
    assert past.end_floors == (model.config.vocab_size - 1,)  # held to the last timestamp, not beyond the vocabulary
    held = plan_generation(config, model.config, 2, lambda: None, earliest_end=[0.2, 0.4], **kwargs)
    assert held.row_copies(lambda i, j: True) == 1
    assert plan.row_copies(lambda i, j: True) == 1  # 3 rows, floors (25, 0, 0): no whole blocks
    alike = plan_generation(config, model.config, 2, lambda: None, earliest_end=2.0, **kwargs)
    assert alike.row_copies(lambda i, j: True) == 2
