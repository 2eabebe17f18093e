"""whisper_pt generate on a small random model against transformers 4.57.6 (same weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import WHISPER_LIKE as MODEL
from tests.helpers import WHISPER_LIKE_GENERATION as GENERATION
from tests.helpers import (
    assert_bucketed_prefixes_match_unpadded,
    assert_generate_takes_encoder_outputs,
    assert_nearby_limits_share_one_loop,
    assert_one_loop_reads_every_temperature,
    assert_seeded_top_k_sampling,
    assert_text_prefix_continues_the_decoding,
    scale_weights,
)
from whisper_core import GenerationConfig, WhisperConfig
from whisper_core.decoding import NumpyOps, beam
from whisper_pt import WhisperForConditionalGeneration
from whisper_pt.generation import TorchOps


@pytest.fixture(scope="module")
def models():
    """transformers' model with weights scaled so outputs depend on the audio, and ours with its state."""
    from transformers import GenerationConfig as ReferenceGeneration
    from transformers import WhisperConfig as ReferenceConfig
    from transformers import WhisperForConditionalGeneration as Reference

    torch.manual_seed(0)
    reference = scale_weights(Reference(ReferenceConfig(**MODEL)).eval(), gain=2.0)
    reference.generation_config = ReferenceGeneration(**GENERATION)
    ours = WhisperForConditionalGeneration(WhisperConfig(**MODEL)).eval()
    ours.load_state_dict(reference.state_dict())
    ours.generation_config = GenerationConfig(**GENERATION)
    return ours, reference


@pytest.fixture(scope="module")
def features():
    return torch.randn(3, 80, 60, generator=torch.Generator().manual_seed(1))


def reference_generate(reference, features, prefix, kwargs):
    """transformers' own greedy/beam loop (``GenerationMixin.generate``) with its Whisper logits processors,
    given our prefix: the reference for the decoding loop and the rules without Whisper's seek logic."""
    from transformers import GenerationConfig as ReferenceGeneration
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        SuppressTokensAtBeginLogitsProcessor,
        SuppressTokensLogitsProcessor,
        WhisperTimeStampLogitsProcessor,
    )
    from transformers.generation.utils import GenerationMixin

    begin = prefix.shape[1]
    timestamps = kwargs.get("return_timestamps", False)
    processors = [
        SuppressTokensAtBeginLogitsProcessor(GENERATION["begin_suppress_tokens"], begin),
        SuppressTokensLogitsProcessor(GENERATION["suppress_tokens"]),
    ]
    if timestamps:
        processors.append(WhisperTimeStampLogitsProcessor(ReferenceGeneration(**GENERATION), begin_index=begin))
    config = ReferenceGeneration(
        decoder_start_token_id=51, eos_token_id=50, pad_token_id=50, bos_token_id=50,
        max_length=begin + kwargs.get("max_new_tokens", GENERATION["max_length"] - begin),
        num_beams=kwargs.get("num_beams", 1), length_penalty=kwargs.get("length_penalty", 1.0), do_sample=False,
    )  # fmt: skip
    return GenerationMixin.generate(
        reference,
        features,
        generation_config=config,
        decoder_input_ids=prefix,
        logits_processor=LogitsProcessorList(processors),
    )


CASES = [
    {"language": "en"},
    {"language": "german", "task": "translate"},
    {"language": ["en", "es", "<|zh|>"]},
    {"language": "en", "return_timestamps": True},
    {"language": "es", "return_timestamps": True, "max_new_tokens": 20},
    {"language": "de", "prompt_ids": torch.tensor([59, 10, 11, 12])},
    {"language": "en", "max_new_tokens": 5},
    {"language": "en", "num_beams": 3},
    {"language": "de", "num_beams": 2, "return_timestamps": True},
    {"language": "es", "num_beams": 4, "length_penalty": 0.5, "max_new_tokens": 12},
]


@pytest.mark.parametrize("kwargs", CASES)
def test_generate_matches_transformers(models, features, kwargs):
    ours, reference = models
    mine = ours.generate(features, **kwargs)
    prefix_length = 3 + (not kwargs.get("return_timestamps", False)) + (4 if "prompt_ids" in kwargs else 0)
    theirs = reference_generate(reference, features, mine[:, :prefix_length], kwargs)
    assert torch.equal(mine, theirs), (mine, theirs)


def test_detect_language_matches_transformers(models, features):
    ours, reference = models
    probabilities = ours.detect_language(features, return_probabilities=True)
    best = [max(row, key=row.get) for row in probabilities]
    expected = reference.detect_language(features)
    assert [GENERATION["lang_to_id"][f"<|{code}|>"] for code in best] == expected.tolist()
    detected = ours.detect_language(features)  # transformers' form: language token ids
    assert detected.dtype == expected.dtype and torch.equal(detected, expected)
    longer = torch.cat([features, features], dim=-1)  # cut to the first 30 s, as transformers does
    assert torch.equal(ours.detect_language(longer, num_segment_frames=features.shape[-1]), expected)
    for row in probabilities:
        assert abs(sum(row.values()) - 1.0) < 1e-5


def test_outputs_on_request(models, features):
    ours, _ = models
    result = ours.generate(features, language="en", output_scores=True, return_dict_in_generate=True, max_new_tokens=6)
    assert result.sequences.shape[0] == 3 and len(result.scores) == result.sequences.shape[1] - 4
    assert result.no_speech_probs.shape == (3,) and torch.all(
        (result.no_speech_probs >= 0) & (result.no_speech_probs <= 1)
    )
    chosen = torch.stack([score.argmax(-1) for score in result.scores], dim=1)
    finished = torch.cumsum(result.sequences[:, 4:] == 50, dim=1) > 1  # after the first end-of-text: padding
    assert torch.equal(torch.where(finished, 50, chosen), result.sequences[:, 4:])
    detected = ours.generate(features, return_dict_in_generate=True, max_new_tokens=3)
    assert all(code in {"en", "zh", "de", "es"} for code in detected.languages)


def test_sampling_is_seeded_and_draws_from_the_top_k(models, features):
    ours, _ = models
    kwargs = dict(language="en", do_sample=True, temperature=1.0, top_k=3)

    def sample(seed: int):
        generator = torch.Generator().manual_seed(seed)
        return ours.generate(features, generator=generator, output_scores=True, return_dict_in_generate=True, **kwargs)

    # Each step here leaves 14-80% of its probability outside the top 3: were top_k ignored, the ~100
    # draws would all stay inside it with a probability below 1e-20.
    assert_seeded_top_k_sampling(sample, 3, begin=4, eos=50, min_draws=50)
    greedy = ours.generate(features, language="en", do_sample=True, temperature=0.0)
    assert torch.equal(greedy, ours.generate(features, language="en"))


def test_sampling_reads_its_temperature(models, features):
    ours, _ = models
    greedy = ours.generate(features, language="en").numpy()

    def sample(temperature: float) -> torch.Tensor:
        return ours.generate(
            features, language="en", do_sample=True, temperature=temperature, generator=torch.Generator().manual_seed(3)
        )

    assert_one_loop_reads_every_temperature(ours, sample, greedy)


def test_bad_arguments(models, features):
    ours, _ = models
    with pytest.raises(ValueError, match="not supported by this model"):
        ours.generate(features, language="fr")
    with pytest.raises(ValueError, match="exceed max_target_positions"):
        ours.generate(features, language="en", max_new_tokens=100)
    with pytest.raises(ValueError, match="startofprev"):
        ours.generate(features, language="en", prompt_ids=[10, 11])
    with pytest.raises(TypeError, match="unsupported"):
        ours.generate(features, language="en", wibble=1)
    plain = WhisperForConditionalGeneration(WhisperConfig(**MODEL))
    with pytest.raises(ValueError, match="no_timestamps_token_id"):
        plain.generate(features)


def test_beam_bookkeeping_is_the_same_in_numpy_and_torch():
    """The shared beam steps give the same states through NumPy and PyTorch ops."""
    rng = np.random.default_rng(0)
    batch, beams, vocab, begin, capacity = 2, 3, 12, 2, 9
    prefix = np.array([[7, 8], [7, 9]])
    states = {
        name: beam.initial_state(ops, prefix, beams, capacity, 0, like)
        for name, ops, like in (("np", NumpyOps(), np.zeros(1)), ("pt", TorchOps(), torch.zeros(1)))
    }
    length = begin
    while True:
        log_probs = np.log(rng.dirichlet(np.ones(vocab), size=(batch, beams))).astype(np.float32)
        states["np"] = beam.step(
            NumpyOps(),
            states["np"],
            log_probs,
            length=length,
            begin=begin,
            capacity=capacity,
            eos=11,
            length_penalty=1.0,
        )
        states["pt"] = beam.step(
            TorchOps(),
            states["pt"],
            torch.from_numpy(log_probs),
            length=length,
            begin=begin,
            capacity=capacity,
            eos=11,
            length_penalty=1.0,
        )
        running_fields = () if states["np"].all_stopped.all() else ("running", "source_beam")  # none runs on
        for field in ("is_finished", *running_fields):
            np.testing.assert_array_equal(
                getattr(states["np"], field), getattr(states["pt"], field).numpy(), err_msg=field
            )
        # Empty finished slots all score -1e9 and may be ordered differently; the filled ones must agree.
        filled = states["np"].is_finished
        for field in ("finished", "finished_lengths", "finished_scores"):
            np.testing.assert_allclose(
                getattr(states["np"], field)[filled],
                getattr(states["pt"], field).numpy()[filled],
                rtol=1e-6,
                err_msg=field,
            )
        length += 1
        if not beam.should_continue(NumpyOps(), states["np"]):
            assert not beam.should_continue(TorchOps(), states["pt"])
            break
    sequences, _, longest = beam.best_sequences(NumpyOps(), states["np"])
    assert sequences.shape == (batch, capacity) and begin < longest <= capacity


def test_transformers_call_forms_are_accepted(models, features):
    """What transformers users pass: the processor's ``attention_mask`` (unused: 30 s windows), ``max_length``
    over the whole output, and ``prompt_ids`` as a ``[batch, length]`` tensor (one prompt per row)."""
    ours, _ = models
    plain = ours.generate(features, language="en", max_new_tokens=6)
    masked = ours.generate(features, language="en", max_new_tokens=6, attention_mask=torch.ones(3, 60))
    assert torch.equal(plain, masked)
    assert ours.generate(features, language="en", max_length=7).shape[1] <= 7  # prefix (4) + at most 3 new
    assert torch.equal(
        ours.generate(features, language="en", max_length=7), ours.generate(features, language="en", max_new_tokens=3)
    )
    prompts = torch.tensor([[59, 10, 11], [59, 12, 13], [59, 14, 15]])
    as_rows = ours.generate(features, language="en", max_new_tokens=4, prompt_ids=[row for row in prompts])
    assert torch.equal(ours.generate(features, language="en", max_new_tokens=4, prompt_ids=prompts), as_rows)


def test_generate_takes_encoder_outputs(models, features):
    ours, _ = models
    with torch.no_grad():
        states = ours.model.encoder(features).last_hidden_state
    assert_generate_takes_encoder_outputs(ours, features, states, max_new_tokens=6)


def test_beam_search_gives_sequences_scores(models, features):
    ours, _ = models
    out = ours.generate(
        features, language="en", num_beams=3, max_new_tokens=4, output_scores=True, return_dict_in_generate=True
    )
    assert out.sequences_scores.shape == (3,) and torch.equal(out.sequences_scores, out.scores)
    greedy = ours.generate(features, language="en", max_new_tokens=4, output_scores=True, return_dict_in_generate=True)
    assert greedy.sequences_scores is None and len(greedy.scores) >= 1


def test_bucketed_prefixes_give_the_tokens_of_unpadded_rows(models, features):
    ours, _ = models
    assert_bucketed_prefixes_match_unpadded(ours, features, 6)


def test_nearby_limits_of_new_tokens_share_one_loop(models, features):
    ours, _ = models
    assert_nearby_limits_share_one_loop(ours, features)


def test_a_text_prefix_continues_the_decoding(models, features):
    ours, _ = models
    assert_text_prefix_continues_the_decoding(ours, features, 6)
