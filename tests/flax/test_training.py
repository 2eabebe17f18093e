"""whisper_flax.training: schedule, weight-decay mask, labels, exact gradient accumulation, SpecAugment, the
train and eval steps, the same loss on an 8-device CPU mesh as on one device (in a subprocess, since this
process already runs JAX on one device), and a short real fine-tuning of tiny.en that whisper_pt loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax.traverse_util import flatten_dict
from jax.sharding import PartitionSpec as P

from tests.conftest import ROOT, synthesize
from tests.helpers import FRAMES, SMALL  # classifier_proj_size is unused by these language models
from whisper_core import WhisperConfig, WhisperProcessor, load_audio
from whisper_flax import FlaxWhisperForConditionalGeneration
from whisper_flax.modeling import _compute_mask_indices
from whisper_flax.training import (
    create_train_state,
    loss_and_grads,
    make_eval_step,
    make_mesh,
    make_optimizer,
    make_schedule,
    make_train_step,
    pad_labels,
    shard_batch,
)
from whisper_pt import WhisperForConditionalGeneration

LABEL_LENGTHS = (5, 11, 3, 9, 7, 2, 12, 6)  # uneven, so micro-batches hold different token counts


def small_model(**overrides) -> FlaxWhisperForConditionalGeneration:
    return FlaxWhisperForConditionalGeneration(WhisperConfig(**{**SMALL, **overrides}), seed=0)


def make_batch(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = [rng.integers(4, SMALL["vocab_size"], n).tolist() for n in LABEL_LENGTHS[:size]]
    return {
        "input_features": rng.standard_normal((size, 80, FRAMES)).astype(np.float32),
        "labels": pad_labels(labels, SMALL["decoder_start_token_id"]),
    }


def max_rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def model_loss_of(model, batch, rows) -> float:
    return float(model(batch["input_features"][rows], labels=batch["labels"][rows]).loss)


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def batch():
    return make_batch(4)


def test_schedule_warms_up_then_decays_linearly():
    schedule = make_schedule(1.0, total_steps=10, warmup_steps=4)
    expected = [0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0]
    np.testing.assert_allclose([float(schedule(i)) for i in range(11)], expected, atol=1e-7)
    no_warmup = make_schedule(2.0, total_steps=4)
    np.testing.assert_allclose([float(no_warmup(i)) for i in range(5)], [2.0, 1.5, 1.0, 0.5, 0.0], atol=1e-7)
    with pytest.raises(ValueError, match="warmup_steps"):
        make_schedule(1.0, total_steps=4, warmup_steps=4)


def test_weight_decay_reaches_matrices_only(model):
    optimizer = make_optimizer(0.1, total_steps=10, weight_decay=0.5, max_grad_norm=None)
    zero_grads = jax.tree.map(jnp.zeros_like, model.params)
    updates, _ = optimizer.update(zero_grads, optimizer.init(model.params), model.params)
    params, updates = flatten_dict(model.params, sep="/"), flatten_dict(updates, sep="/")
    decayed = {path for path, leaf in params.items() if leaf.ndim > 1}
    assert "model/decoder/embed_tokens/embedding" in decayed and "model/encoder/conv1/kernel" in decayed
    assert not any(path.endswith("bias") or "layer_norm" in path for path in decayed)
    for path, update in updates.items():  # AdamW on a zero gradient: only the decay term, -lr * wd * param
        expected = -0.1 * 0.5 * params[path] if path in decayed else np.zeros_like(params[path])
        np.testing.assert_allclose(update, expected, rtol=1e-6, atol=1e-12, err_msg=path)


def test_pad_labels_drops_the_start_token_and_pads_with_ignore_index():
    labels = pad_labels([[50257, 10, 11, 50256], [12, 50256]], decoder_start_token_id=50257)
    np.testing.assert_array_equal(labels, [[10, 11, 50256], [12, 50256, -100]])
    assert labels.dtype == np.int32
    assert pad_labels([[1, 2]], decoder_start_token_id=0, length=4).tolist() == [[1, 2, -100, -100]]
    with pytest.raises(ValueError, match="longer"):
        pad_labels([[1, 2, 3]], decoder_start_token_id=0, length=2)


def test_loss_and_grads_are_the_models_and_accumulation_is_exact(model, batch):
    def model_loss(params):
        return model(batch["input_features"], labels=batch["labels"], params=params).loss

    reference_loss, reference_grads = jax.jit(jax.value_and_grad(model_loss))(model.params)
    for steps in (1, 4):
        loss, grads = jax.jit(
            lambda params, batch, k=steps: loss_and_grads(model, params, batch, train=False, accumulation_steps=k)
        )(model.params, batch)
        assert max_rel(loss, reference_loss) <= 1e-6, steps
        errors = jax.tree.map(max_rel, grads, reference_grads)
        assert max(jax.tree.leaves(errors)) <= 1e-5, steps
    # Averaging the micro-batches' means (what optax.MultiSteps does) would be a different loss here.
    halves = [model_loss_of(model, batch, rows) for rows in ([0, 2], [1, 3])]
    assert abs(np.mean(halves) - float(reference_loss)) > 1e-3
    with pytest.raises(ValueError, match="accumulation_steps"):
        loss_and_grads(model, model.params, batch, accumulation_steps=3)


def test_train_step_lowers_the_loss_and_eval_step_agrees(model, batch):
    before = jax.tree.map(np.array, model.params)
    state = create_train_state(model, make_optimizer(3e-3, total_steps=20, warmup_steps=2))
    train, evaluate = make_train_step(model), make_eval_step(model)
    losses = []
    for _ in range(10):
        state, metrics = train(state, batch)
        losses.append(float(metrics["loss"]))
        assert np.isfinite(float(metrics["grad_norm"]))
    assert int(state.step) == 10
    assert abs(losses[0] - model_loss_of(model, batch, slice(None))) <= 1e-6 * losses[0]  # before the update
    assert losses[-1] < 0.8 * losses[0], losses
    evaluated = evaluate(state.params, batch)
    tuned = model(batch["input_features"], labels=batch["labels"], params=state.params).loss
    assert max_rel(evaluated["loss"], tuned) <= 1e-6
    assert int(evaluated["tokens"]) == sum(LABEL_LENGTHS[:4])
    # the step donates its state, never the model's own params
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, model.params), before)


def test_training_draws_dropout_and_spec_augment_from_the_state_key(batch):
    noisy = small_model(dropout=0.1, apply_spec_augment=True, mask_time_prob=0.2, mask_time_length=5)
    optimizer = make_optimizer(1e-3, total_steps=10)
    train = make_train_step(noisy)

    def first_loss(seed: int) -> float:
        return float(train(create_train_state(noisy, optimizer, seed=seed), batch)[1]["loss"])

    assert first_loss(0) == first_loss(0)
    assert first_loss(0) != first_loss(1)
    assert abs(first_loss(0) - float(make_eval_step(noisy)(noisy.params, batch)["loss"])) > 1e-4


def test_mask_indices_follow_the_spec_augment_rule():
    key = jax.random.PRNGKey(0)
    # mask_prob * length / mask_length = 150 exactly: 150 distinct one-frame spans in every row
    single = np.asarray(_compute_mask_indices(key, (4, 3000), 0.05, 1))
    assert single.sum(axis=1).tolist() == [150] * 4
    assert not np.array_equal(single[0], single[1])
    # 15 spans of 10 frames (overlaps merge them): every masked run is at least 10 frames long
    spans = np.asarray(_compute_mask_indices(key, (4, 3000), 0.05, 10))
    for row in spans:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
        runs = edges[1::2] - edges[::2]
        assert runs.min() >= 10 and 10 <= row.sum() <= 150 and len(runs) <= 15
    assert np.asarray(_compute_mask_indices(key, (2, 50), 0.0, 1, min_masks=2)).sum(axis=1).tolist() == [2, 2]
    # 2.5 spans on average: 2 or 3, rounded with one uniform draw per call
    keys = jax.random.split(key, 2000)
    counts = np.asarray(jax.vmap(lambda k: _compute_mask_indices(k, (1, 10), 0.25, 1).sum())(keys))
    assert set(counts.tolist()) == {2, 3} and abs(counts.mean() - 2.5) < 0.05
    for length in (0, 11):
        with pytest.raises(ValueError, match="mask_length"):
            _compute_mask_indices(key, (1, 10), 0.5, length)


def test_spec_augment_zeroes_whole_frames_and_bins_in_training_only(batch):
    config = dict(apply_spec_augment=True, mask_time_prob=0.2, mask_time_length=5)
    augmented = small_model(**config, mask_feature_prob=0.2, mask_feature_length=4)
    ones = jnp.ones((3, 80, FRAMES))
    masked = np.asarray(
        augmented.module.apply(
            {"params": augmented.params},
            ones,
            method=lambda module, x: module.model._mask_input_features(x),
            rngs={"dropout": jax.random.PRNGKey(1)},
        )
    )
    for sample in masked.astype(bool):  # [bins, frames]: kept exactly where both its bin and its frame are kept
        kept_bins, kept_frames = sample.any(axis=1), sample.any(axis=0)
        np.testing.assert_array_equal(sample, kept_bins[:, None] & kept_frames[None, :])
        assert 5 <= (~kept_frames).sum() <= 15 and 4 <= (~kept_bins).sum() <= 16  # 2-3 and 4 spans
    features, labels = batch["input_features"], batch["labels"]
    plain = small_model()(features, labels=labels).encoder_last_hidden_state
    evaluated = augmented(features, labels=labels).encoder_last_hidden_state
    trained = augmented(features, labels=labels, train=True, dropout_rng=jax.random.PRNGKey(0))
    np.testing.assert_array_equal(evaluated, plain)
    assert float(np.abs(trained.encoder_last_hidden_state - plain).max()) > 0.1


LEARNING_RATE = 1e-3  # of the mesh test


def run_on_mesh(directory: str) -> None:
    """Subprocess body: two accumulated train steps on a 4 x 2 ("data", "model") mesh of 8 CPU devices."""
    work = Path(directory)
    model = FlaxWhisperForConditionalGeneration.from_pretrained(work / "model")
    batch = dict(np.load(work / "batch.npz"))
    mesh = make_mesh(model_parallel=2)
    optimizer = make_optimizer(LEARNING_RATE, total_steps=10, weight_decay=0.01)
    state = create_train_state(model, optimizer, mesh=mesh, min_shard_size=0)
    train = make_train_step(model, accumulation_steps=2, mesh=mesh, min_shard_size=0)
    sharded = shard_batch(batch, mesh)
    losses = []
    for _ in range(2):
        state, metrics = train(state, sharded)
        losses.append(float(metrics["loss"]))
    specs = [leaf.sharding.spec for leaf in jax.tree.leaves(state.params)]
    facts = {
        "devices": len(jax.devices()),
        "losses": losses,
        "model_sharded": sum("model" in spec for spec in specs),
        "leaves": len(specs),
        "kernel_spec": str(state.params["model"]["decoder"]["layers"]["0"]["fc1"]["kernel"].sharding.spec),
        "features_spec": str(sharded["input_features"].sharding.spec),
    }
    (work / "facts.json").write_text(json.dumps(facts))
    np.savez(work / "params.npz", **model.canonical_tensors(jax.device_get(state.params)))


def test_mesh_of_eight_devices_gives_the_one_device_loss_and_update(model, tmp_path):
    batch = make_batch(8)
    model.save_pretrained(tmp_path / "model")
    np.savez(tmp_path / "batch.npz", **batch)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    command = [
        sys.executable,
        "-c",
        f"from tests.flax.test_training import run_on_mesh; run_on_mesh({str(tmp_path)!r})",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads((tmp_path / "facts.json").read_text())
    assert facts["devices"] == 8 and facts["features_spec"] == str(P("data"))
    assert facts["kernel_spec"] == str(P(None, "model"))  # fc1 [64, 128]: its larger dimension
    assert facts["model_sharded"] >= facts["leaves"] // 3

    optimizer = make_optimizer(LEARNING_RATE, total_steps=10, weight_decay=0.01)
    state, train = create_train_state(model, optimizer), make_train_step(model)
    losses = []
    for _ in range(2):
        state, metrics = train(state, batch)
        losses.append(float(metrics["loss"]))
    assert max(abs(a - b) / b for a, b in zip(facts["losses"], losses, strict=True)) <= 1e-5
    # Adam divides each gradient element by its own magnitude, so where a gradient is near zero the step's
    # size rides on rounding noise (up to 1.2e-5 of a 1e-3 step measured here): 5% of a step is the bound.
    on_mesh = np.load(tmp_path / "params.npz")
    for name, value in model.canonical_tensors(jax.device_get(state.params)).items():
        np.testing.assert_allclose(on_mesh[name], value, rtol=0, atol=0.05 * LEARNING_RATE, err_msg=name)


TRAINING_TEXTS = [
    "Seven gray ships sailed slowly into the quiet harbor at dawn.",
    "Please bring the blue folder to the second meeting room.",
    "The old clock on the tower stopped at half past nine.",
]


@pytest.mark.slow
def test_fine_tuning_tiny_en_lowers_the_loss_and_loads_in_whisper_pt(tiny_en_dir, speech_dir, tmp_path):
    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    audio = [load_audio(synthesize(text, "en-us", speech_dir, f"train{i}")) for i, text in enumerate(TRAINING_TEXTS)]
    features = processor(audio, sampling_rate=16000, return_tensors="np").input_features.astype(np.float32)
    model = FlaxWhisperForConditionalGeneration.from_pretrained(tiny_en_dir)
    token_ids = [processor.tokenizer(text)["input_ids"] for text in TRAINING_TEXTS]
    batch = {"input_features": features, "labels": pad_labels(token_ids, model.config.decoder_start_token_id)}
    steps = 5
    state = create_train_state(model, make_optimizer(1e-4, total_steps=steps, warmup_steps=1))
    train = make_train_step(model)
    losses = []
    for _ in range(steps):
        state, metrics = train(state, batch)
        losses.append(float(metrics["loss"]))
    final = float(make_eval_step(model)(state.params, batch)["loss"])
    print("loss per step:", [round(loss, 4) for loss in losses], "after:", round(final, 4))
    assert final < 0.5 * losses[0], losses

    saved = model.save_pretrained(tmp_path / "tuned", params=state.params)
    pt = WhisperForConditionalGeneration.from_pretrained(saved).eval()
    with torch.no_grad():
        theirs = pt(torch.from_numpy(features), labels=torch.from_numpy(batch["labels"]).long()).logits.numpy()
    ours = np.asarray(model(features, labels=batch["labels"], params=state.params).logits)
    assert float(np.abs(ours - theirs).max()) <= 1e-4


def test_frozen_encoder_stays_as_it_was(batch):
    """``make_optimizer(freeze_encoder=True)`` (whisper_pt's freeze_encoder): after a step, the encoder's
    params are what they were and the decoder's have moved."""
    model = small_model()
    state = create_train_state(model, make_optimizer(1e-2, total_steps=10, max_grad_norm=0.5, freeze_encoder=True))
    before = flatten_dict(jax.tree.map(np.asarray, state.params), sep="/")
    after = flatten_dict(jax.tree.map(np.asarray, make_train_step(model)(state, batch)[0].params), sep="/")
    moved = {name for name in before if not np.array_equal(before[name], after[name])}
    assert moved and all("/encoder/" not in f"/{name}" for name in moved)
    assert any("/decoder/" in f"/{name}" for name in moved)
    assert all(
        np.array_equal(before[name], after[name]) for name in before if "encoder/" in name.split("model/")[-1][:8]
    )


def test_spec_augment_spares_the_padding_frames(batch):
    """With the processor's frame ``attention_mask``, time spans fall on real frames only and their
    count follows each row's real length, as in whisper_pt."""
    key = jax.random.PRNGKey(3)
    lengths = jnp.array([3000, 1000, 4])
    single = np.asarray(_compute_mask_indices(key, (3, 3000), 0.05, 1, lengths=lengths))
    assert single.sum(axis=1).tolist() == [150, 50, 0] and not single[1, 1000:].any()
    spans = np.asarray(_compute_mask_indices(key, (3, 3000), 0.05, 10, lengths=lengths))
    assert spans[0, 1000:].any() and not spans[1, 1000:].any() and not spans[2].any()
    augmented = small_model(apply_spec_augment=True, mask_time_prob=0.5, mask_time_length=2)
    real = FRAMES // 3
    frames = jnp.asarray(np.arange(FRAMES)[None, :] < np.array([[FRAMES], [real]]), jnp.int32)
    masked = np.asarray(
        augmented.module.apply(
            {"params": augmented.params},
            jnp.ones((2, 80, FRAMES)),
            frames,
            method=lambda module, x, mask: module.model._mask_input_features(x, mask),
            rngs={"dropout": jax.random.PRNGKey(1)},
        )
    )
    assert (masked[1][:, real:] == 1).all() and (masked[1][:, :real] == 0).any() and (masked[0][:, real:] == 0).any()
    with_mask = {**batch, "attention_mask": np.ones((batch["labels"].shape[0], FRAMES), np.int32)}
    optimizer = make_optimizer(1e-3, total_steps=10)
    _, metrics = make_train_step(augmented)(create_train_state(augmented, optimizer), with_mask)
    assert np.isfinite(float(metrics["loss"]))
