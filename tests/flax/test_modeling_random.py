"""whisper_flax models against transformers 4.57.6's Flax models on small random configs (same params).

Tolerances (DESIGN.md §3): states, logits, attentions max abs <= 1e-5; loss rel <= 1e-5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

transformers = pytest.importorskip("transformers")

from tests.helpers import SMALL, assert_seq2seq_outputs_close, max_abs, small_inputs  # noqa: E402
from whisper_core.config import WhisperConfig  # noqa: E402
from whisper_flax import (  # noqa: E402
    FlaxWhisperForAudioClassification,
    FlaxWhisperForConditionalGeneration,
    FlaxWhisperModel,
    KVCache,
)
from whisper_flax.modeling import _attend_head_by_head, shift_tokens_right, sinusoids  # noqa: E402

TOL = 1e-5
LOSS_RTOL = 1e-5


def shapes(params) -> dict[str, tuple[int, ...]]:
    return {"/".join(path): tuple(leaf.shape) for path, leaf in flatten_dict(params).items()}


def make_pair(hf_cls, our_cls, **overrides):
    """transformers' Flax model with random params, and ours built without init and given those params."""
    kwargs = {**SMALL, **overrides}
    reference = hf_cls(transformers.WhisperConfig(**kwargs), seed=0)
    ours = our_cls(WhisperConfig(**kwargs), _do_init=False)
    ours.params = reference.params
    return reference, ours


@pytest.fixture(scope="module")
def lm_pair():
    return make_pair(transformers.FlaxWhisperForConditionalGeneration, FlaxWhisperForConditionalGeneration)


@pytest.fixture(scope="module")
def inputs():
    return small_inputs()


def test_param_tree_equals_transformers(lm_pair):
    reference, _ = lm_pair
    fresh = FlaxWhisperForConditionalGeneration(WhisperConfig(**SMALL), _do_init=False)
    tree = jax.eval_shape(lambda key: fresh.init_weights(key, fresh.input_shape), jax.random.PRNGKey(0))
    assert shapes(tree) == shapes(reference.params)
    assert "model/encoder/layers/0/self_attn/q_proj/kernel" in shapes(tree)
    table = sinusoids(SMALL["max_source_positions"], SMALL["d_model"])
    assert max_abs(table, reference.params["model"]["encoder"]["embed_positions"]["embedding"]) <= TOL
    half = FlaxWhisperForConditionalGeneration(WhisperConfig(**SMALL), param_dtype=jnp.float16, _do_init=False)
    tree = jax.eval_shape(lambda key: half.init_weights(key, half.input_shape), jax.random.PRNGKey(0))
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(tree)} == {jnp.dtype(jnp.float16)}


def test_forward_matches_transformers(lm_pair, inputs):
    reference, ours = lm_pair
    features, ids = inputs
    flags = dict(output_hidden_states=True, output_attentions=True)
    mine, theirs = ours(features, ids, **flags), reference(features, ids, **flags)
    assert_seq2seq_outputs_close(mine, theirs, TOL)
    as_tuple = ours(features, ids, return_dict=False)
    assert len(as_tuple) == len(reference(features, ids, return_dict=False))
    assert max_abs(as_tuple[0], theirs.logits) <= TOL


def test_padding_mask_matches_transformers(lm_pair, inputs):
    reference, ours = lm_pair
    features, ids = inputs
    mask = np.ones_like(ids)
    mask[0, :2] = 0  # left padding: transformers' Flax counts positions from the first real token
    mine = ours(features, ids, decoder_attention_mask=mask)
    theirs = reference(features, ids, decoder_attention_mask=mask)
    assert max_abs(mine.logits[0, 2:], theirs.logits[0, 2:]) <= TOL
    assert max_abs(mine.logits[1], theirs.logits[1]) <= TOL
    assert np.isfinite(np.asarray(mine.logits)).all()


def test_encode_decode_and_cache_match_full_forward(lm_pair, inputs):
    reference, ours = lm_pair
    features, ids = inputs
    full = ours(features, ids).logits
    encoder_outputs = ours.encode(features)
    assert max_abs(encoder_outputs.last_hidden_state, reference.encode(features).last_hidden_state) <= TOL
    assert max_abs(ours.decode(ids, encoder_outputs).logits, reference.decode(ids, encoder_outputs).logits) <= TOL

    cache = ours.init_cache(2, SMALL["max_target_positions"], encoder_outputs)
    assert isinstance(cache, KVCache) and int(cache.index) == 0
    step = jax.jit(lambda ids, cache: ours.decode(ids, encoder_outputs, past_key_values=cache))
    out = step(ids[:, :3], cache)  # the prefix at once, then one token at a time
    logits = [out.logits]
    for i in range(3, ids.shape[1]):
        out = step(ids[:, i : i + 1], out.past_key_values)
        logits.append(out.logits)
    assert int(out.past_key_values.index) == ids.shape[1]
    assert max_abs(jnp.concatenate(logits, axis=1), full) <= TOL


def test_loss_and_labels(lm_pair, inputs):
    reference, ours = lm_pair
    features, labels = inputs
    labels = labels.copy()
    labels[1, -2:] = -100
    out = ours(features, labels=labels)
    shifted = shift_tokens_right(jnp.asarray(labels), SMALL["pad_token_id"], SMALL["decoder_start_token_id"])
    assert int(shifted[0, 0]) == SMALL["decoder_start_token_id"] and not bool((shifted == -100).any())
    logits = reference(features, np.asarray(shifted)).logits
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    valid = labels != -100
    picked = np.take_along_axis(np.asarray(log_probs), np.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    expected = -picked[valid].mean()
    assert max_abs(out.logits, logits) <= TOL
    assert abs(float(out.loss) - expected) <= LOSS_RTOL * abs(expected)
    with pytest.raises(ValueError, match="max_target_positions"):
        ours(features, labels=np.zeros((2, SMALL["max_target_positions"] + 1), np.int32))


def test_model_and_audio_classification_match_transformers(inputs):
    features, ids = inputs
    reference, ours = make_pair(transformers.FlaxWhisperModel, FlaxWhisperModel)
    assert shapes(ours.init_weights(jax.random.PRNGKey(0), ours.input_shape)) == shapes(reference.params)
    assert max_abs(ours(features, ids).last_hidden_state, reference(features, ids).last_hidden_state) <= TOL

    reference, ours = make_pair(transformers.FlaxWhisperForAudioClassification, FlaxWhisperForAudioClassification)
    assert shapes(ours.init_weights(jax.random.PRNGKey(0), ours.input_shape)) == shapes(reference.params)
    mine, theirs = ours(features, output_hidden_states=True), reference(features, output_hidden_states=True)
    assert max_abs(mine.logits, theirs.logits) <= TOL
    assert max(max_abs(a, b) for a, b in zip(mine.hidden_states, theirs.hidden_states, strict=True)) <= TOL
    labels = np.array([0, 1])
    expected = -np.mean(np.asarray(jax.nn.log_softmax(theirs.logits))[np.arange(2), labels])
    assert abs(float(ours(features, labels=labels).loss) - expected) <= LOSS_RTOL * abs(expected)

    # One label is a regression: the loss is the mean squared error against the targets.
    reference, ours = make_pair(
        transformers.FlaxWhisperForAudioClassification, FlaxWhisperForAudioClassification, num_labels=1
    )
    targets = np.array([0.5, -1.25], np.float32)
    expected = np.mean((np.asarray(reference(features).logits)[:, 0] - targets) ** 2)
    assert abs(float(ours(features, labels=targets).loss) - expected) <= LOSS_RTOL * abs(expected)


def test_training_mode_is_random_and_differentiable(lm_pair, inputs):
    _, ours = lm_pair
    features, ids = inputs
    config = WhisperConfig(**SMALL, dropout=0.2, decoder_layerdrop=0.5)
    model = FlaxWhisperForConditionalGeneration(config, _do_init=False)

    @jax.jit
    @jax.value_and_grad
    def loss(params, key):
        return model(features, labels=ids, params=params, train=True, dropout_rng=key).loss

    (a, grads), (b, _) = loss(ours.params, jax.random.PRNGKey(0)), loss(ours.params, jax.random.PRNGKey(1))
    assert float(a) != float(b)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    assert float(model(features, labels=ids, params=ours.params).loss) == float(ours(features, labels=ids).loss)


def test_bad_inputs(lm_pair, inputs):
    _, ours = lm_pair
    features, ids = inputs
    with pytest.raises(ValueError, match="length 60"):
        ours(features[:, :, :50], ids)
    with pytest.raises(ValueError, match="decoder_input_ids or labels"):
        ours(features)
    with pytest.raises(ValueError, match="batch"):
        ours.init_cache(3, 8, ours.encode(features))


def test_encoder_attention_head_by_head_matches_the_whole(monkeypatch):
    """With HEADWISE_MIN_QUERIES positions the encoder's attention goes one head at a time unless the
    weights are asked for; both paths give the same states up to float32 rounding (and match
    transformers' Flax)."""
    from whisper_flax import modeling
    from whisper_flax.modeling import HEADWISE_MIN_QUERIES

    calls = []
    headwise = modeling._attend_head_by_head
    monkeypatch.setattr(modeling, "_attend_head_by_head", lambda *args: calls.append(1) or headwise(*args))
    positions = HEADWISE_MIN_QUERIES
    reference, ours = make_pair(transformers.FlaxWhisperModel, FlaxWhisperModel, max_source_positions=positions)
    features = np.random.default_rng(1).standard_normal((2, 80, 2 * positions)).astype(np.float32)
    by_head = ours.encode(features).last_hidden_state
    whole = ours.encode(features, output_attentions=True)
    assert whole.attentions[0].shape == (2, 4, positions, positions)
    assert len(calls) == SMALL["encoder_layers"], "the head-by-head path ran once per encoder layer, then not again"
    assert max_abs(by_head, whole.last_hidden_state) <= 1e-6
    assert max_abs(by_head, reference.encode(features).last_hidden_state) <= TOL


def test_head_by_head_attention_has_the_gradient_of_plain_attention():
    """The encoder's attention recomputes each head's weights in its hand-written backward pass: the
    gradients must be those jax differentiates from plain softmax(q k^T) v."""
    q, k, v, d_out = (jax.random.normal(key, (2, 3, 16, 8)) for key in jax.random.split(jax.random.PRNGKey(0), 4))

    def plain(q, k, v):
        return jax.nn.softmax(jnp.einsum("...qd,...kd->...qk", q, k), axis=-1) @ v

    def loss(attend):
        return lambda q, k, v: jnp.sum(attend(q, k, v) * d_out)

    assert max_abs(_attend_head_by_head(q, k, v), plain(q, k, v)) <= TOL
    ours = jax.grad(loss(_attend_head_by_head), argnums=(0, 1, 2))(q, k, v)
    reference = jax.grad(loss(plain), argnums=(0, 1, 2))(q, k, v)
    for name, mine, theirs in zip("qkv", ours, reference, strict=True):
        assert max_abs(mine, theirs) <= TOL, name
