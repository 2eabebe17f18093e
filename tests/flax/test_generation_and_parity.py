"""whisper_flax against whisper_pt on the same random weights (through the canonical checkpoint), and the
compiled generate loop against whisper_pt's eager one and the NumPy reference of the rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from weights_bridge import canonical, flax_msgpack
from whisper_core import GenerationConfig, WhisperConfig
from whisper_core.decoding import LogitRules, NumpyOps
from whisper_flax import FlaxWhisperForConditionalGeneration, FlaxWhisperModel, JaxOps
from whisper_pt import WhisperForConditionalGeneration

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
def checkpoint(tmp_path_factory):
    """whisper_pt with weights scaled so outputs depend on the audio, saved as a canonical checkpoint."""
    torch.manual_seed(0)
    pt = WhisperForConditionalGeneration(WhisperConfig(**MODEL)).eval()
    with torch.no_grad():
        for parameter in pt.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 2.0 / parameter.shape[-1] ** 0.5)
    pt.generation_config = GenerationConfig(**GENERATION)
    return pt, pt.save_pretrained(tmp_path_factory.mktemp("random"))


@pytest.fixture(scope="module")
def models(checkpoint):
    pt, directory = checkpoint
    return pt, FlaxWhisperForConditionalGeneration.from_pretrained(directory)


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(1).standard_normal((3, 80, 60)).astype(np.float32)


def max_abs(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


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
    np.testing.assert_array_equal(np.asarray(second.sequences), np.asarray(first.sequences)[::-1])
    theirs = pt.generate(torch.from_numpy(features), **kwargs)
    assert len(first.scores) == len(theirs.scores)
    for a, b in zip(first.scores, theirs.scores, strict=True):
        a, b = np.asarray(a), b.numpy()
        finite = np.isfinite(b)
        assert (np.isfinite(a) == finite).all() and np.abs(a[finite] - b[finite]).max() <= TOL


def test_sampling_is_seeded_and_top_k_one_is_greedy(models, features):
    _, ours = models
    kwargs = dict(language="en", max_new_tokens=NEW, do_sample=True, temperature=1.0)
    first = ours.generate(features, top_k=5, prng_key=jax.random.PRNGKey(3), **kwargs)
    np.testing.assert_array_equal(first, ours.generate(features, top_k=5, prng_key=jax.random.PRNGKey(3), **kwargs))
    greedy = ours.generate(features, language="en", max_new_tokens=NEW)
    np.testing.assert_array_equal(ours.generate(features, top_k=1, **kwargs), greedy)


def test_jax_ops_apply_the_rules_like_numpy():
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
