"""whisper_tf models against transformers 4.57.6's TF model and whisper_pt on small random configs (same weights).

The weights travel as data: our random model's canonical tensors are written as HF's ``tf_model.h5``
(weights_bridge) for transformers, and given to whisper_pt through ``from_canonical``.
Tolerances (DESIGN.md §3): states, logits, attentions max abs <= 1e-5; loss rel <= 1e-5.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from tests.helpers import FRAMES, SMALL, assert_seq2seq_outputs_close, max_abs, small_inputs
from weights_bridge import rules, tf_h5
from whisper_core.config import WhisperConfig
from whisper_tf import KVCache, TFWhisperForAudioClassification, TFWhisperForConditionalGeneration, TFWhisperModel
from whisper_tf.checkpoint import load_variables, model_variables
from whisper_tf.modeling import _compute_mask_indices, shift_tokens_right, sinusoids

TOL = 1e-5
LOSS_RTOL = 1e-5


@pytest.fixture(scope="module")
def ours():
    keras.utils.set_random_seed(0)
    return TFWhisperForConditionalGeneration(WhisperConfig(**SMALL))


@pytest.fixture(scope="module")
def reference(ours, tmp_path_factory):
    """transformers' TF model (tf-keras) loading our weights from an HF ``tf_model.h5``."""
    transformers = pytest.importorskip("transformers")
    directory = tmp_path_factory.mktemp("hf_tf")
    ours.config.save_pretrained(directory)
    tf_h5.from_canonical(directory / tf_h5.TF_WEIGHTS_NAME, ours.canonical_tensors(), ours.config)
    return transformers.TFWhisperForConditionalGeneration.from_pretrained(directory)


@pytest.fixture(scope="module")
def inputs():
    return small_inputs()


def test_variable_paths_are_the_weight_table(ours, reference):
    paths = model_variables(ours)
    assert set(paths) == {
        path
        for path, _ in rules.parameter_names(rules.KERAS_VARIABLES, ours.config, with_prefix=True).values()
        if path.startswith("model/")
    }
    theirs = {v.name.split("/", 1)[1].removesuffix(":0"): tuple(v.shape) for v in reference.weights}
    assert {path: tuple(v.shape) for path, v in paths.items()} == theirs
    table = paths["model/encoder/embed_positions/weight"].numpy()
    assert max_abs(table, sinusoids(SMALL["max_source_positions"], SMALL["d_model"])) == 0.0
    assert not paths["model/encoder/embed_positions/weight"].trainable
    half = TFWhisperForConditionalGeneration(WhisperConfig(**SMALL), dtype="float16")
    assert {v.dtype for v in half.weights} == {"float16"}


def test_forward_matches_transformers(ours, reference, inputs):
    features, ids = inputs
    flags = dict(output_hidden_states=True, output_attentions=True)
    mine, theirs = ours(features, decoder_input_ids=ids, **flags), reference(features, decoder_input_ids=ids, **flags)
    assert_seq2seq_outputs_close(mine, theirs, TOL)
    as_tuple = ours(features, decoder_input_ids=ids, return_dict=False)
    assert max_abs(as_tuple[0], theirs.logits) <= TOL


def test_loss_matches_transformers(ours, reference, inputs):
    features, labels = inputs
    labels = labels.copy()
    labels[1, -2:] = -100
    mine, theirs = ours(features, labels=labels), reference(features, labels=labels)
    shifted = shift_tokens_right(labels, SMALL["pad_token_id"], SMALL["decoder_start_token_id"]).numpy()
    assert shifted[0, 0] == SMALL["decoder_start_token_id"] and not (shifted == -100).any()
    assert max_abs(mine.logits, theirs.logits) <= TOL
    expected = float(np.asarray(theirs.loss).reshape(()))
    assert abs(float(mine.loss) - expected) <= LOSS_RTOL * abs(expected)
    with pytest.raises(ValueError, match="max_target_positions"):
        ours(features, labels=np.zeros((2, SMALL["max_target_positions"] + 1), np.int32))


def test_same_weights_as_whisper_pt(ours, inputs):
    from whisper_pt import WhisperForConditionalGeneration

    features, ids = inputs
    pt = WhisperForConditionalGeneration.from_canonical(ours.config, ours.canonical_tensors())
    mask = np.ones_like(ids)
    mask[0, :2] = 0  # left padding, with positions counted from the first real token
    positions = np.maximum(np.arange(ids.shape[1])[None, :] - (1 - mask).sum(1, keepdims=True), 0)
    labels = np.where(mask > 0, ids, -100)  # padding rows differ by design (see attend), so no loss on them
    kwargs = dict(decoder_input_ids=ids, decoder_attention_mask=mask, decoder_position_ids=positions, labels=labels)
    with torch.no_grad():
        theirs = pt(torch.from_numpy(features), **{k: torch.from_numpy(v).long() for k, v in kwargs.items()})
    mine = ours(features, **kwargs)
    assert max_abs(mine.encoder_last_hidden_state, theirs.encoder_last_hidden_state) <= TOL
    assert max_abs(mine.logits[0, 2:], theirs.logits[0, 2:]) <= TOL
    assert max_abs(mine.logits[1], theirs.logits[1]) <= TOL
    assert np.isfinite(mine.logits.numpy()).all()
    assert abs(float(mine.loss) - theirs.loss.item()) <= LOSS_RTOL * abs(theirs.loss.item())


def test_loading_skips_the_random_draws_and_leaves_them_to_everyone_else(ours, monkeypatch):
    """``from_canonical`` builds from zeros, not from the random values its weights replace; a model built
    without a checkpoint, or after a load that failed, still draws."""
    drawn = []
    original = keras.initializers.RandomNormal.__call__
    monkeypatch.setattr(
        keras.initializers.RandomNormal, "__call__", lambda self, *a, **k: drawn.append(a) or original(self, *a, **k)
    )
    loaded = TFWhisperForConditionalGeneration.from_canonical(ours.config, ours.canonical_tensors())
    assert drawn == []
    assert max_abs(loaded.get_output_embeddings().embeddings, ours.get_output_embeddings().embeddings) == 0.0
    with pytest.raises(ValueError, match="shape"):
        wrong = WhisperConfig(**{**SMALL, "decoder_ffn_dim": 8})
        TFWhisperForConditionalGeneration.from_canonical(wrong, ours.canonical_tensors())
    drawn.clear()
    fresh = TFWhisperForConditionalGeneration(ours.config)
    assert drawn and 0.0 < float(tf.math.reduce_std(fresh.get_output_embeddings().embeddings)) < 0.1


@pytest.mark.parametrize(
    "model_class", [TFWhisperModel, TFWhisperForConditionalGeneration, TFWhisperForAudioClassification]
)
def test_weights_are_built_without_running_the_model(model_class, ours, monkeypatch):
    """A new model has every weight, the checkpoint's shapes included, without any layer having run: each
    composite layer builds its sublayers from the config's widths. The encoder still takes whole windows
    only."""
    ran = []
    for layer in (type(ours.get_encoder()), type(ours.get_decoder())):
        call = layer.call
        monkeypatch.setattr(
            layer, "call", lambda self, *a, _call=call, **k: ran.append(self.name) or _call(self, *a, **k)
        )
    model = model_class(ours.config)
    assert ran == []
    assert all(variable.shape.is_fully_defined() for variable in model.weights)
    count = len(model.weights)
    model.build((1, ours.config.num_mel_bins, FRAMES))  # as Keras users do: makes no second set of weights
    assert len(model.weights) == count
    load_variables(model, ours.canonical_tensors(), "ours")  # every name and shape checked
    features = np.zeros((1, ours.config.num_mel_bins, FRAMES), np.float32)
    states = model.get_encoder()(features).last_hidden_state
    assert ran == ["encoder"]
    assert states.shape == (1, ours.config.max_source_positions, ours.config.d_model)
    assert model.dummy_inputs["input_features"].shape[-1] == FRAMES
    with pytest.raises(ValueError, match="length"):
        model.get_encoder()(np.zeros((1, ours.config.num_mel_bins, 2), np.float32))


def test_static_cache_matches_full_forward(ours, inputs):
    features, ids = inputs
    full = ours(features, decoder_input_ids=ids).logits
    encoder_states = ours.get_encoder()(features).last_hidden_state
    cache = ours.init_cache(2, SMALL["max_target_positions"], encoder_states)
    assert isinstance(cache, KVCache) and int(cache.index) == 0

    @tf.function(jit_compile=True)
    def step(ids, cache):  # model outputs are Python objects: a compiled function returns their tensors
        out = ours(encoder_outputs=(encoder_states,), decoder_input_ids=ids, past_key_values=cache)
        return out.logits, out.past_key_values

    step_logits, cache = step(ids[:, :3], cache)  # the prefix at once, then one token at a time
    logits = [step_logits]
    for i in range(3, ids.shape[1]):
        step_logits, cache = step(ids[:, i : i + 1], cache)
        logits.append(step_logits)
    assert int(cache.index) == ids.shape[1]
    assert max_abs(tf.concat(logits, axis=1), full) <= TOL
    started = ours(features, decoder_input_ids=ids[:, :3], use_cache=True)  # a cache of max_target_positions
    assert started.past_key_values.layers[0][0].shape[1] == SMALL["max_target_positions"]  # [b * h, slots, hd]
    assert max_abs(started.logits, full[:, :3]) <= TOL


@pytest.mark.parametrize(("weighted", "num_labels"), [(False, 3), (True, 3), (False, 1)])
def test_model_and_audio_classification_match_whisper_pt(inputs, weighted, num_labels):
    import whisper_pt

    features, ids = inputs
    config = WhisperConfig(**SMALL, use_weighted_layer_sum=weighted, num_labels=num_labels)
    torch.manual_seed(0)
    pt = whisper_pt.WhisperForAudioClassification(config).eval()
    with torch.no_grad():
        if weighted:
            pt.layer_weights.copy_(torch.tensor([0.1, 0.5, -0.3]))
    ours = TFWhisperForAudioClassification.from_canonical(config, pt.canonical_tensors())
    assert set(model_variables(ours)) >= {"encoder/conv1/kernel", "projector/kernel", "classifier/bias"}
    assert ("layer_weights" in model_variables(ours)) == weighted
    labels = np.array([0, 2]) if num_labels > 1 else np.array([0.5, -1.25], np.float32)  # one label: regression
    with torch.no_grad():
        theirs = pt(torch.from_numpy(features), labels=torch.from_numpy(labels))
    mine = ours(features, labels=labels)
    assert max_abs(mine.logits, theirs.logits) <= TOL
    assert abs(float(mine.loss) - theirs.loss.item()) <= LOSS_RTOL * abs(theirs.loss.item())

    pt_base = whisper_pt.WhisperModel(config).eval()
    base = TFWhisperModel.from_canonical(config, pt_base.canonical_tensors())
    with torch.no_grad():
        expected = pt_base(torch.from_numpy(features), decoder_input_ids=torch.from_numpy(ids).long())
    assert max_abs(base(features, decoder_input_ids=ids).last_hidden_state, expected.last_hidden_state) <= TOL


def test_spec_augment_masks_spans_in_training_only(inputs):
    features, ids = inputs
    config = WhisperConfig(
        **SMALL, apply_spec_augment=True, mask_time_prob=0.3, mask_time_length=5, mask_feature_prob=0.2,
        mask_feature_length=4, mask_feature_min_masks=1,
    )  # fmt: skip
    model = TFWhisperForConditionalGeneration(config)
    layer = model.model
    masked = layer._mask_input_features(tf.constant(features), training=True).numpy()
    np.testing.assert_array_equal(layer._mask_input_features(tf.constant(features), training=False), features)
    zero_frames = (masked == 0).all(axis=1)  # [b, frames]
    zero_bins = (masked == 0).all(axis=2)  # [b, bins]
    for row in range(2):
        assert 5 <= zero_frames[row].sum() < FRAMES and 4 <= zero_bins[row].sum() < SMALL["num_mel_bins"]
    mask = _compute_mask_indices(64, 50, mask_prob=0.5, mask_length=5, min_masks=2).numpy()
    runs = [np.diff(np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0]))) for row in mask]
    assert all(len(run) and (run[::2] >= 5).all() for run in runs)  # masked runs are whole spans
    assert 0.3 < mask.mean() < 0.5  # 5 spans of 5 frames in 50, minus overlaps
    with pytest.raises(ValueError, match="must not exceed"):
        _compute_mask_indices(2, 4, mask_prob=0.5, mask_length=5)
    a = model(features, labels=ids, training=True).loss
    assert np.isfinite(float(a))


def test_bad_inputs(ours, inputs):
    features, ids = inputs
    with pytest.raises(ValueError, match="length 60"):
        ours(features[:, :, :50], decoder_input_ids=ids)
    with pytest.raises(ValueError, match="exactly one"):
        ours(features)
    with pytest.raises(ValueError, match="batch"):
        ours.init_cache(3, 8, ours.get_encoder()(features))
    with pytest.raises(ValueError, match="ties proj_out"):
        TFWhisperForConditionalGeneration(WhisperConfig(**SMALL, tie_word_embeddings=False))


def test_head_masks_match_whisper_pt(ours, inputs):
    """The same head masks as whisper_pt (which matches transformers) give the same outputs."""
    from whisper_pt import WhisperForConditionalGeneration

    features, ids = inputs
    pt = WhisperForConditionalGeneration.from_canonical(ours.config, ours.canonical_tensors())
    layers, heads = SMALL["encoder_layers"], SMALL["encoder_attention_heads"]
    rng = np.random.default_rng(3)
    masks = {name: rng.integers(0, 2, (layers, heads)).astype(np.float32) for name in ("head_mask", "decoder_head_mask", "cross_attn_head_mask")}  # fmt: skip
    masks["head_mask"][0, 0] = 0.0
    with torch.no_grad():
        theirs = pt(
            torch.from_numpy(features),
            decoder_input_ids=torch.from_numpy(ids).long(),
            **{k: torch.from_numpy(v) for k, v in masks.items()},
        )
    mine = ours(features, decoder_input_ids=ids, output_attentions=True, **masks)
    assert max_abs(mine.logits, theirs.logits) <= TOL
    assert float(np.abs(np.asarray(mine.encoder_attentions[0])[:, 0]).max()) == 0.0
    with pytest.raises(ValueError, match="one per layer"):
        ours(features, decoder_input_ids=ids, head_mask=np.ones((layers + 1, heads), np.float32))


def test_spec_augment_spares_the_padding_frames(inputs):
    """With the processor's frame ``attention_mask``, time spans fall on real frames only and their
    count follows each row's real length, as in whisper_pt; ``fit`` takes it in a dict of inputs."""
    single = _compute_mask_indices(3, 3000, 0.05, 1, lengths=tf.constant([3000, 1000, 4])).numpy()
    assert single.sum(axis=1).tolist() == [150, 50, 0] and not single[1, 1000:].any()
    features, ids = inputs
    config = WhisperConfig(**SMALL, apply_spec_augment=True, mask_time_prob=0.5, mask_time_length=2)
    model = TFWhisperForConditionalGeneration(config)
    real = FRAMES // 3
    frames = tf.constant(np.arange(FRAMES)[None, :] < np.array([[FRAMES], [real]]), tf.int32)
    ones = tf.ones((2, SMALL["num_mel_bins"], FRAMES))
    masked = model.model._mask_input_features(ones, True, frames).numpy()
    assert (masked[1][:, real:] == 1).all() and (masked[1][:, :real] == 0).any() and (masked[0][:, real:] == 0).any()
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    history = model.fit({"input_features": features, "attention_mask": frames}, ids, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
