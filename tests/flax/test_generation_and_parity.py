"""whisper_flax against whisper_pt on the same random weights (through the canonical checkpoint), and the
compiled generate loop against whisper_pt's eager one and the NumPy reference of the rules."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
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
from weights_bridge import canonical, flax_msgpack
from whisper_core import GenerationConfig, WhisperConfig
from whisper_core.decoding import NumpyOps, invert_distribution, keep_top_k
from whisper_flax import FlaxWhisperForConditionalGeneration, FlaxWhisperModel, JaxOps
from whisper_flax.generation import _pick

TOL = 1e-5
NEW = 8  # max_new_tokens: small, as every new shape compiles the loop again


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """whisper_pt with weights scaled so outputs depend on the audio, saved as a canonical checkpoint."""
    pt = whisper_like_pt_model()
    return pt, pt.save_pretrained(tmp_path_factory.mktemp("random"))


@pytest.fixture(scope="module")
def models(checkpoint):
    pt, directory = checkpoint
    return pt, FlaxWhisperForConditionalGeneration.from_pretrained(directory)


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(1).standard_normal((3, 80, 60)).astype(np.float32)


def test_checkpoint_round_trip_is_bit_identical(checkpoint, models, tmp_path):
    pt, directory = checkpoint
    _, ours = models
    assert ours.generation_config == pt.generation_config
    ours.save_pretrained(tmp_path)
    saved, original = canonical.load_weights(tmp_path), canonical.load_weights(directory)
    assert sorted(saved) == sorted(original)
    assert all(saved[name].dtype == original[name].dtype for name in saved)
    assert all(saved[name].tobytes() == original[name].tobytes() for name in saved)
    assert WhisperConfig.from_pretrained(tmp_path) == WhisperConfig.from_pretrained(directory)
    assert GenerationConfig.from_pretrained(tmp_path) == pt.generation_config
    base = FlaxWhisperModel.from_pretrained(directory)  # no "model/" level in its tree
    assert set(base.params) == {"encoder", "decoder"}

    native = tmp_path / "native"  # HF's flax_model.msgpack alone loads into the same tree
    native.mkdir()
    flax_msgpack.from_canonical(native / flax_msgpack.FLAX_WEIGHTS_NAME, original, pt.config)
    pt.config.save_pretrained(native)
    again = FlaxWhisperForConditionalGeneration.from_pretrained(native).params
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool((a == b).all()), again, ours.params))


def test_forward_and_loss_match_whisper_pt(models, features):
    pt, ours = models
    ids = np.array([[51, 52, 57, 61, 10, 20, 30]] * 3)
    with torch.no_grad():
        theirs = pt(torch.from_numpy(features), labels=torch.from_numpy(ids), output_hidden_states=True)
    mine = ours(features, labels=ids, output_hidden_states=True)
    assert max_abs(mine.encoder_last_hidden_state, theirs.encoder_last_hidden_state) <= TOL
    assert max_abs(mine.logits, theirs.logits) <= TOL
    for a, b in zip(mine.decoder_hidden_states, theirs.decoder_hidden_states, strict=True):
        # These weights are scaled up: the residual stream grows to tens, so compare at float32's scale.
        assert max_abs(a, b) <= TOL * max(1.0, float(b.abs().max()))
    assert abs(float(mine.loss) - theirs.loss.item()) <= 1e-5 * abs(theirs.loss.item())


CASES = [
    {"language": ["en", "de", "es"]},
    {"return_timestamps": True},  # languages detected; timestamp rules with a traced length
    {"return_timestamps": True, "earliest_end": [1.0, None, 0.06]},  # rows held to their ends: a loop input
    {"language": "zh", "task": "translate", "prompt_ids": [[59, 7, 8], None, [59, 9]]},  # left-padded rows
]


@pytest.mark.parametrize("kwargs", CASES)
def test_greedy_generate_matches_whisper_pt(models, features, kwargs):
    pt, ours = models
    mine = ours.generate(features, max_new_tokens=NEW, return_dict_in_generate=True, **kwargs)
    theirs = pt.generate(torch.from_numpy(features), max_new_tokens=NEW, return_dict_in_generate=True, **kwargs)
    np.testing.assert_array_equal(np.asarray(mine.sequences), theirs.sequences.numpy())
    assert mine.languages == theirs.languages
    assert max_abs(mine.no_speech_probs, theirs.no_speech_probs) <= TOL


BEAM_CASES = [
    {"language": "en", "num_beams": 3},
    {"language": ["de", "es", "en"], "num_beams": 2, "return_timestamps": True},
    {"language": "es", "num_beams": 4, "length_penalty": 0.5, "prompt_ids": [[59, 7, 8], None, [59, 9]]},
]


@pytest.mark.parametrize("kwargs", BEAM_CASES)
def test_compiled_beam_search_matches_whisper_pt(models, features, kwargs):
    """The whole beam search runs in one while_loop and still picks the eager loop's hypotheses."""
    pt, ours = models
    common = dict(max_new_tokens=NEW, return_dict_in_generate=True, output_scores=True)
    mine = ours.generate(features, **common, **kwargs)
    theirs = pt.generate(torch.from_numpy(features), **common, **kwargs)
    np.testing.assert_array_equal(np.asarray(mine.sequences), theirs.sequences.numpy())
    assert max_abs(mine.scores, theirs.scores) <= TOL
    assert max_abs(mine.no_speech_probs, theirs.no_speech_probs) <= TOL


def test_detect_language_matches_whisper_pt(models, features):
    pt, ours = models
    assert_detect_language_matches_pt(pt, ours, features, TOL)


def test_generate_takes_encoder_outputs(models, features):
    _, ours = models
    assert_generate_takes_encoder_outputs(ours, features, ours.encode(features).last_hidden_state, NEW)


def test_generate_compiles_once_and_returns_scores(models, features):
    pt, ours = models
    kwargs = dict(language="en", max_new_tokens=6, output_scores=True, return_dict_in_generate=True)
    first = ours.generate(features, **kwargs)
    traces = ours._loop_traces
    second = ours.generate(features[::-1].copy(), **kwargs)  # same shapes, other values: no new trace
    assert ours._loop_traces == traces
    np.testing.assert_array_equal(np.asarray(second.sequences), np.asarray(first.sequences)[::-1])
    theirs = pt.generate(torch.from_numpy(features), **kwargs)
    assert len(first.scores) == len(theirs.scores)
    for a, b in zip(first.scores, theirs.scores, strict=True):
        a, b = np.asarray(a), b.numpy()
        finite = np.isfinite(b)
        # These weights are scaled up (logits of several units) and XLA fuses differently: float32's scale.
        scale = max(1.0, float(np.abs(b[finite]).max()))
        assert (np.isfinite(a) == finite).all() and np.abs(a[finite] - b[finite]).max() <= TOL * scale


def test_sampling_is_seeded_and_draws_from_the_top_k(models, features):
    _, ours = models
    kwargs = dict(language="en", max_new_tokens=NEW, do_sample=True, temperature=1.0)

    def sample(seed: int):
        return ours.generate(
            features,
            top_k=5,
            prng_key=jax.random.PRNGKey(seed),
            output_scores=True,
            return_dict_in_generate=True,
            **kwargs,
        )

    # Each step here leaves 20-67% of its probability outside the top 5: were top_k ignored, all 24
    # draws would stay inside it with a probability of about 1e-8.
    assert_seeded_top_k_sampling(sample, 5, begin=4, eos=50, min_draws=12)
    greedy = np.asarray(ours.generate(features, language="en", max_new_tokens=NEW))
    np.testing.assert_array_equal(np.asarray(ours.generate(features, top_k=1, **kwargs)), greedy)


def test_one_sampling_loop_serves_every_temperature(models, features):
    _, ours = models
    kwargs = dict(language="en", max_new_tokens=NEW, do_sample=True, prng_key=jax.random.PRNGKey(3))
    greedy = np.asarray(ours.generate(features, language="en", max_new_tokens=NEW))
    assert_one_loop_reads_every_temperature(ours, lambda t: ours.generate(features, temperature=t, **kwargs), greedy)


def test_jax_ops_apply_the_rules_like_numpy():
    rules, logits, tokens, begin, capacity = timestamp_rules_case()
    apply = jax.jit(lambda logits, tokens, length: rules.apply(JaxOps(), logits, tokens, length, begin))
    for length in range(begin, capacity):
        expected = rules.apply(NumpyOps(), logits, tokens, length, begin)
        got = np.asarray(apply(jnp.asarray(logits), jnp.asarray(tokens), jnp.int32(length)))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_bad_arguments(models, features):
    _, ours = models
    with pytest.raises(ValueError, match="not supported by this model"):
        ours.generate(features, language="fr")
    with pytest.raises(ValueError, match="exceed max_target_positions"):
        ours.generate(features, language="en", max_new_tokens=100)
    with pytest.raises(ValueError, match="beam search with sampling"):
        ours.generate(features, language="en", num_beams=2, do_sample=True)
    with pytest.raises(TypeError, match="unsupported"):
        ours.generate(features, language="en", wibble=1)


def test_first_argmax_is_numpys_argmax():
    """The shared two-pass greedy pick, run on this backend's ops, agrees with np.argmax."""
    from tests.conftest import argmax_edge_rows
    from whisper_core.decoding import first_argmax

    rows = argmax_edge_rows()
    picked = first_argmax(JaxOps(), jnp.asarray(rows))
    np.testing.assert_array_equal(np.asarray(picked), rows.argmax(axis=-1))
    assert picked.dtype == jnp.int32


def test_bucketed_prefixes_compile_once(models, features):
    _, ours = models
    assert_bucketed_prefixes_match_unpadded(ours, features, NEW)


def test_nearby_limits_of_new_tokens_share_one_loop(models, features):
    _, ours = models
    assert_nearby_limits_share_one_loop(ours, features)


def test_decodings_of_other_lengths_compile_nothing(models, features, caplog):
    """Once a loop is compiled, decodings that stop at other lengths (a long file's windows) and the
    log-probabilities cut to them compile no further program: their buffers are cut in NumPy. Cut on the
    device, every new length compiled one, afresh in every process."""
    _, ours = models
    kwargs = dict(language="en", output_logprobs=True, return_dict_in_generate=True)
    ours.generate(features, max_new_tokens=6, **kwargs)
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles():
        lengths = {ours.generate(features, max_new_tokens=limit, **kwargs).sequences.shape[1] for limit in (1, 3, 5)}
    assert len(lengths) == 3
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling")] == []


def test_a_text_prefix_continues_the_decoding(models, features):
    _, ours = models
    assert_text_prefix_continues_the_decoding(ours, features, NEW)


def test_top_k_keeps_the_values_at_or_above_the_sorted_kth():
    assert_keeps_top_k(lambda logits, k: np.asarray(keep_top_k(JaxOps(), jnp.asarray(logits), k)))


def test_sampling_inverts_the_distribution():
    assert_inverts_distribution(
        lambda rows, draws: invert_distribution(JaxOps(), rows, jnp.asarray(rows), jnp.asarray(draws)), np.float32
    )


def test_a_row_of_nan_logits_samples_greedys_token():
    draws = jnp.asarray(np.random.default_rng(0).random((3, 1), dtype=np.float32))
    assert_samples_nan_rows_as_greedy(
        lambda logits, k: _pick(jnp.asarray(logits), k, jnp.float32(0.7), draws), np.int32
    )
