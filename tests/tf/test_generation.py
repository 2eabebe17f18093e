"""whisper_tf's compiled generate loops against whisper_pt's eager ones (same random weights), and the
TF ops of the shared rules and beam bookkeeping against their NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

from whisper_core import GenerationConfig, WhisperConfig
from whisper_core.decoding import LogitRules, NumpyOps, beam
from whisper_tf import TFWhisperForConditionalGeneration
from whisper_tf.generation import TfOps

TOL = 1e-5
# A 100-token vocabulary laid out like Whisper's: text < 50, then the special tokens, then timestamps.
MODEL = dict(
    vocab_size=100, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
    decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=30,
    max_target_positions=40, decoder_start_token_id=51, eos_token_id=50, pad_token_id=50, bos_token_id=50,
)  # fmt: skip
GENERATION = dict(
    decoder_start_token_id=51, eos_token_id=50, pad_token_id=50, bos_token_id=50, no_timestamps_token_id=61,
    prev_sot_token_id=59, lang_to_id={"<|en|>": 52, "<|zh|>": 53, "<|de|>": 54, "<|es|>": 55},
    task_to_id={"translate": 56, "transcribe": 57}, is_multilingual=True, suppress_tokens=[1, 2, 3],
    begin_suppress_tokens=[5, 50], max_initial_timestamp_index=5, max_length=40,
)  # fmt: skip
NEW = 8  # max_new_tokens: small, as every new shape compiles the loop again


@pytest.fixture(scope="module")
def models():
    """whisper_pt with weights scaled so outputs depend on the audio, and ours with the same weights."""
    from whisper_pt import WhisperForConditionalGeneration

    torch.manual_seed(0)
    pt = WhisperForConditionalGeneration(WhisperConfig(**MODEL)).eval()
    with torch.no_grad():
        for parameter in pt.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 2.0 / parameter.shape[-1] ** 0.5)
    pt.generation_config = GenerationConfig(**GENERATION)
    ours = TFWhisperForConditionalGeneration.from_canonical(pt.config, pt.canonical_tensors(), pt.generation_config)
    return pt, ours


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(1).standard_normal((3, 80, 60)).astype(np.float32)


def max_abs(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


CASES = [
    {"language": ["en", "de", "es"]},
    {"return_timestamps": True},  # languages detected; timestamp rules with a traced length
    {"language": "zh", "task": "translate", "prompt_ids": [[59, 7, 8], None, [59, 9]]},  # left-padded rows
    {"language": "en", "num_beams": 3},
    {"language": "de", "num_beams": 2, "length_penalty": 0.5, "return_timestamps": True},
]


@pytest.mark.parametrize("kwargs", CASES)
def test_generate_matches_whisper_pt(models, features, kwargs):
    pt, ours = models
    mine = ours.generate(features, max_new_tokens=NEW, return_dict_in_generate=True, **kwargs)
    theirs = pt.generate(torch.from_numpy(features), max_new_tokens=NEW, return_dict_in_generate=True, **kwargs)
    np.testing.assert_array_equal(mine.sequences.numpy(), theirs.sequences.numpy())
    assert mine.languages == theirs.languages
    assert max_abs(mine.no_speech_probs, theirs.no_speech_probs) <= TOL


def test_detect_language_matches_whisper_pt(models, features):
    pt, ours = models
    mine = ours.detect_language(features, return_probabilities=True)
    theirs = pt.detect_language(torch.from_numpy(features), return_probabilities=True)
    assert [sorted(row) for row in mine] == [sorted(row) for row in theirs]
    assert max(abs(a[code] - b[code]) for a, b in zip(mine, theirs, strict=True) for code in a) <= TOL
    ids = ours.detect_language(features)  # transformers' form: language token ids
    np.testing.assert_array_equal(np.asarray(ids), pt.detect_language(torch.from_numpy(features)).numpy())


def test_generate_compiles_once_and_returns_scores(models, features):
    pt, ours = models
    kwargs = dict(language="en", max_new_tokens=6, output_scores=True, return_dict_in_generate=True)
    first = ours.generate(features, **kwargs)
    traces = ours._loop_traces
    second = ours.generate(features[::-1].copy(), **kwargs)  # same shapes, other values: no new trace
    assert ours._loop_traces == traces
    np.testing.assert_array_equal(second.sequences.numpy(), first.sequences.numpy()[::-1])
    theirs = pt.generate(torch.from_numpy(features), **kwargs)
    assert len(first.scores) == len(theirs.scores)
    for a, b in zip(first.scores, theirs.scores, strict=True):
        a, b = a.numpy(), b.numpy()
        finite = np.isfinite(b)
        # These weights are scaled up (logits of several units) and XLA fuses differently: float32's scale.
        scale = max(1.0, float(np.abs(b[finite]).max()))
        assert (np.isfinite(a) == finite).all() and np.abs(a[finite] - b[finite]).max() <= TOL * scale


def test_sampling_is_seeded_and_top_k_one_is_greedy(models, features):
    _, ours = models
    kwargs = dict(language="en", max_new_tokens=NEW, do_sample=True, temperature=1.0)
    first = ours.generate(features, top_k=5, seed=3, **kwargs).numpy()
    np.testing.assert_array_equal(first, ours.generate(features, top_k=5, seed=3, **kwargs).numpy())
    others = [ours.generate(features, top_k=5, seed=seed, **kwargs).numpy() for seed in (4, 5)]
    assert any(other.shape != first.shape or (other != first).any() for other in others)
    greedy = ours.generate(features, language="en", max_new_tokens=NEW).numpy()
    np.testing.assert_array_equal(ours.generate(features, top_k=1, **kwargs).numpy(), greedy)


def test_tf_ops_apply_the_rules_like_numpy():
    rules = LogitRules(
        vocab_size=100, eos_token_id=50, no_timestamps_token_id=61, suppress_tokens=(1, 2),
        begin_suppress_tokens=(5, 50), return_timestamps=True, max_initial_timestamp_index=5,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    begin, capacity = 3, 12
    tokens = np.full((4, capacity), 50)
    tokens[:, :begin] = [51, 52, 57]
    tokens[:, begin:] = rng.choice([10, 20, 62, 64, 70], size=(4, capacity - begin))
    logits = rng.standard_normal((4, 100)).astype(np.float32) * 3
    apply = tf.function(
        lambda logits, tokens, length: rules.apply(TfOps(), logits, tokens, length, begin), jit_compile=True
    )
    for length in range(begin, capacity):
        expected = rules.apply(NumpyOps(), logits, tokens, length, begin)
        got = apply(tf.constant(logits), tf.constant(tokens, tf.int32), tf.constant(length)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_tf_ops_step_beams_like_numpy():
    from whisper_tf.generation import _state_tensors, _TracedLength

    rng = np.random.default_rng(0)
    batch, beams, vocab, begin, capacity = 2, 3, 7, 2, 6
    prefix = np.array([[1, 2], [1, 3]])
    expected = beam.initial_state(NumpyOps(), prefix, beams, capacity, 0, None)
    state = beam.BeamState(*_state_tensors(expected))
    for length in range(begin, capacity):
        log_probs = np.log(rng.dirichlet(np.ones(vocab), size=(batch, beams))).astype(np.float32)
        kwargs = dict(begin=begin, capacity=capacity, eos=0, length_penalty=0.7)
        expected = beam.step(NumpyOps(), expected, log_probs, length=length, **kwargs)
        state = beam.step(TfOps(), state, tf.constant(log_probs), length=_TracedLength(tf.constant(length)), **kwargs)
        for name in ("running", "finished", "finished_lengths", "is_finished", "source_beam"):
            np.testing.assert_array_equal(getattr(state, name).numpy(), getattr(expected, name), err_msg=name)
        for name in ("running_scores", "finished_scores"):
            np.testing.assert_allclose(getattr(state, name).numpy(), getattr(expected, name), rtol=1e-6)
        assert beam.should_continue(TfOps(), state) == beam.should_continue(NumpyOps(), expected)


def test_bad_arguments(models, features):
    _, ours = models
    with pytest.raises(ValueError, match="not supported by this model"):
        ours.generate(features, language="fr")
    with pytest.raises(ValueError, match="exceed max_target_positions"):
        ours.generate(features, language="en", max_new_tokens=100)
    with pytest.raises(TypeError, match="unsupported"):
        ours.generate(features, language="en", wibble=1)


def test_first_argmax_is_numpys_argmax():
    """The shared two-pass greedy pick, run on this backend's ops, agrees with np.argmax."""
    from tests.conftest import argmax_edge_rows
    from whisper_core.decoding import first_argmax

    rows = argmax_edge_rows()
    picked = first_argmax(TfOps(), tf.constant(rows))
    np.testing.assert_array_equal(np.asarray(picked), rows.argmax(axis=-1))
    assert picked.dtype == tf.int32
