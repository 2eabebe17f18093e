"""whisper_tf's compiled generate loops against whisper_pt's eager ones (same random weights), and the
TF ops of the shared rules and beam bookkeeping against their NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

from tests.helpers import (
    assert_bucketed_prefixes_match_unpadded,
    assert_detect_language_matches_pt,
    assert_generate_takes_encoder_outputs,
    assert_inverts_distribution,
    assert_keeps_top_k,
    assert_nearby_limits_share_one_loop,
    assert_one_loop_reads_every_temperature,
    assert_samples_nan_rows_as_greedy,
    assert_seeded_top_k_sampling,
    assert_text_prefix_continues_the_decoding,
    max_abs,
    timestamp_rules_case,
    whisper_like_pt_model,
)
from whisper_core.decoding import NumpyOps, beam, invert_distribution, keep_top_k
from whisper_tf import TFWhisperForConditionalGeneration
from whisper_tf.generation import TfOps, _pick

TOL = 1e-5
NEW = 8  # max_new_tokens: small, as every new shape compiles the loop again


@pytest.fixture(scope="module")
def models():
    """whisper_pt with weights scaled so outputs depend on the audio, and ours with the same weights."""
    pt = whisper_like_pt_model()
    ours = TFWhisperForConditionalGeneration.from_canonical(pt.config, pt.canonical_tensors(), pt.generation_config)
    return pt, ours


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(1).standard_normal((3, 80, 60)).astype(np.float32)


CASES = [
    {"language": ["en", "de", "es"]},
    {"return_timestamps": True},  # languages detected; timestamp rules with a traced length
    {"return_timestamps": True, "earliest_end": [1.0, None, 0.06]},  # rows held to their ends: a loop input
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
    assert_detect_language_matches_pt(pt, ours, features, TOL)


def test_generate_takes_encoder_outputs(models, features):
    _, ours = models
    assert_generate_takes_encoder_outputs(ours, features, ours.get_encoder()(features).last_hidden_state, NEW)


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


def test_sampling_is_seeded_and_draws_from_the_top_k(models, features):
    _, ours = models
    kwargs = dict(language="en", max_new_tokens=NEW, do_sample=True, temperature=1.0)

    def sample(seed: int):
        return ours.generate(features, top_k=5, seed=seed, output_scores=True, return_dict_in_generate=True, **kwargs)

    # Each step here leaves 20-67% of its probability outside the top 5: were top_k ignored, all 24
    # draws would stay inside it with a probability of about 1e-8.
    assert_seeded_top_k_sampling(sample, 5, begin=4, eos=50, min_draws=12)
    greedy = np.asarray(ours.generate(features, language="en", max_new_tokens=NEW))
    np.testing.assert_array_equal(np.asarray(ours.generate(features, top_k=1, **kwargs)), greedy)


def test_one_sampling_loop_serves_every_temperature(models, features):
    _, ours = models
    kwargs = dict(language="en", max_new_tokens=NEW, do_sample=True, seed=3)
    greedy = np.asarray(ours.generate(features, language="en", max_new_tokens=NEW))
    assert_one_loop_reads_every_temperature(ours, lambda t: ours.generate(features, temperature=t, **kwargs), greedy)


def test_tf_ops_apply_the_rules_like_numpy():
    rules, logits, tokens, begin, capacity = timestamp_rules_case()
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


def test_bucketed_prefixes_compile_once(models, features):
    _, ours = models
    assert_bucketed_prefixes_match_unpadded(ours, features, NEW)


def test_nearby_limits_of_new_tokens_share_one_loop(models, features):
    _, ours = models
    assert_nearby_limits_share_one_loop(ours, features)


def test_a_text_prefix_continues_the_decoding(models, features):
    _, ours = models
    assert_text_prefix_continues_the_decoding(ours, features, NEW)


def test_sampling_inverts_the_distribution():
    assert_inverts_distribution(
        lambda rows, draws: invert_distribution(TfOps(), rows, tf.constant(rows), tf.constant(draws)), np.float32
    )


def test_top_k_keeps_the_values_at_or_above_the_sorted_kth():
    assert_keeps_top_k(lambda logits, k: keep_top_k(TfOps(), tf.constant(logits), k).numpy())


def test_a_row_of_nan_logits_samples_greedys_token():
    draws = tf.constant(np.random.default_rng(0).random((3, 1), dtype=np.float32))
    assert_samples_nan_rows_as_greedy(
        lambda logits, k: _pick(tf.constant(logits), k, tf.constant(0.7), draws), np.int32
    )
