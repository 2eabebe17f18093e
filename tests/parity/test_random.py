"""Every model class on every pair of backends, on small random weights (DESIGN.md §3: 1e-5; loss rel 1e-5;
first-step gradients rel 1e-4), with hidden states and attentions, plus the fp16/bf16 paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import WHISPER_LIKE, WHISPER_LIKE_GENERATION, scale_weights
from whisper_core import GenerationConfig, WhisperConfig
from whisper_mb.registry import KINDS
from whisper_pt import WhisperForAudioClassification, WhisperForConditionalGeneration

from .runners import HALF_TOL, RUNNERS, assert_close, assert_gradients_close, backends, pairs, trainable_gradients

TOL = 1e-5
GRAD_TOL = 1e-4
MODEL = {**WHISPER_LIKE, "num_labels": 3, "classifier_proj_size": 16, "use_weighted_layer_sum": True}
IDS = np.array([[51, 52, 57, 61, 10, 20, 30]] * 2)


def scaled(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights large enough that every output depends on the input."""
    torch.manual_seed(0)
    return scale_weights(model, gain=1.0).eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One canonical checkpoint with a decoder and one with a classification head, same config."""
    config = WhisperConfig(**MODEL)
    generation = scaled(WhisperForConditionalGeneration(config))
    generation.generation_config = GenerationConfig(**WHISPER_LIKE_GENERATION)
    classification = scaled(WhisperForAudioClassification(config))
    root = tmp_path_factory.mktemp("parity")
    return {
        "generation": generation.save_pretrained(root / "generation"),
        "classification": classification.save_pretrained(root / "classification"),
    }


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(1).standard_normal((2, 80, 60)).astype(np.float32)


def inputs_for(kind: str, features: np.ndarray, **extra) -> dict:
    if kind == "WhisperForAudioClassification":
        return {"input_features": features, **extra}
    return {"input_features": features, "decoder_input_ids": IDS, **extra}


def directory_for(kind: str, checkpoints: dict):
    return checkpoints["classification" if kind == "WhisperForAudioClassification" else "generation"]


@pytest.mark.parametrize("pair", pairs())
@pytest.mark.parametrize("kind", KINDS)
def test_outputs_hidden_states_and_attentions_agree(pair, kind, checkpoints, features):
    results = []
    for name in pair:
        runner = RUNNERS[name]
        model = runner.load(kind, directory_for(kind, checkpoints))
        results.append(
            runner.forward(model, **inputs_for(kind, features, output_hidden_states=True, output_attentions=True))
        )
    first, second = results
    assert sorted(first) == sorted(second)
    for key in first:
        assert_close(key, first[key], second[key], TOL, relative=key.endswith("hidden_states") or "state" in key)


@pytest.mark.parametrize("pair", pairs())
@pytest.mark.parametrize("kind", ["WhisperForConditionalGeneration", "WhisperForAudioClassification"])
def test_loss_and_first_step_gradients_agree(pair, kind, checkpoints, features):
    labels = IDS if kind == "WhisperForConditionalGeneration" else np.array([0, 2])
    losses, gradients = [], []
    for name in pair:
        runner = RUNNERS[name]
        model = runner.load(kind, directory_for(kind, checkpoints))
        inputs = {"input_features": features, "labels": labels}
        losses.append(float(runner.forward(model, **inputs)["loss"]))
        gradients.append(trainable_gradients(runner.gradients(model, **inputs)))
    assert abs(losses[0] - losses[1]) <= TOL * abs(losses[1])
    assert_gradients_close(*gradients, GRAD_TOL)


@pytest.mark.parametrize("pair", pairs())
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_paths(pair, dtype, checkpoints, features):
    """Each backend's half-precision logits stay near its float32 logits, and near the other backend's."""
    inputs = inputs_for("WhisperForConditionalGeneration", features)
    directory = checkpoints["generation"]
    half = []
    for name in pair:
        runner = RUNNERS[name]
        full = runner.forward(runner.load("WhisperForConditionalGeneration", directory), **inputs)["logits"]
        reduced = runner.forward(runner.load("WhisperForConditionalGeneration", directory, dtype), **inputs)["logits"]
        scale = float(np.abs(full).max())
        assert np.isfinite(reduced).all()
        assert_close(f"{name} {dtype} vs float32", reduced / scale, full / scale, HALF_TOL[dtype])
        half.append(reduced / scale)
    assert_close(f"{dtype} between backends", half[0], half[1], HALF_TOL[dtype])


@pytest.mark.parametrize("name", backends())
@pytest.mark.parametrize("given_states", [False, True], ids=["features", "states"])
def test_word_timing_pass_without_logits_gives_the_same_attentions(name, given_states, checkpoints, features):
    """Streaming times words without the output projection (``logits=False``): the same alignment-head
    attentions as the full pass, and no logits."""
    from whisper_mb.registry import load_backend

    engine = load_backend(name, str(checkpoints["generation"]))
    window, heads = features[:1], [[0, 1], [1, 0]]
    states = engine.encode(window) if given_states else None
    logits, full = engine.forward_attentions(window, IDS[:1], heads, states)
    none, alone = engine.forward_attentions(window, IDS[:1], heads, states, logits=False)
    assert none is None and logits.shape == (IDS.shape[1], MODEL["vocab_size"])
    assert alone.shape == full.shape == (len(heads), IDS.shape[1], features.shape[2] // 2)
    np.testing.assert_allclose(alone, full, atol=1e-6)


@pytest.mark.parametrize("name", backends())
def test_encoding_rows_together_gives_each_rows_states(name, checkpoints):
    """The transcription engine's ``encode`` of 3 and of 11 windows (a compiled backend runs them as groups of
    2 + 1 and 8 + 2 + 1, never padded) equals each window encoded alone, row for row."""
    from whisper_mb.registry import load_backend

    engine = load_backend(name, str(checkpoints["generation"]))
    windows = np.random.default_rng(2).standard_normal((11, 80, 60)).astype(np.float32)
    alone = np.concatenate([np.asarray(engine.encode(windows[row : row + 1])) for row in range(len(windows))])
    for rows in (3, 11):
        together = np.asarray(engine.encode(windows[:rows]))
        assert together.shape == alone[:rows].shape
        np.testing.assert_allclose(together, alone[:rows], atol=1e-5)


@pytest.mark.parametrize("name", backends())
def test_copies_of_a_window_decode_from_one_prefix_pass(name, checkpoints, features):
    """``best_of`` draws reach ``generate`` as copies of one window's encoder states; the loops run the
    prefix once per window (``row_copies``): greedy copies give that window's own tokens, log-probability
    and no-speech probability, and sampled copies still draw apart."""
    from whisper_mb.registry import load_backend

    engine = load_backend(name, str(checkpoints["generation"]))
    states = engine.encode(features)
    options = {"max_new_tokens": 8, "timestamps": False, "language": "en"}
    alone = engine.generate(states, [None, None], **options)
    copies = engine.generate(engine.take_rows(states, [0, 0, 0, 1, 1, 1]), [None] * 6, **options)
    expected = [result for result in alone for _ in range(3)]
    assert [c.tokens for c in copies] == [e.tokens for e in expected]
    np.testing.assert_allclose([c.sum_logprob for c in copies], [e.sum_logprob for e in expected], atol=1e-4)
    np.testing.assert_allclose([c.no_speech_prob for c in copies], [e.no_speech_prob for e in expected], atol=1e-6)
    drawn = engine.generate(engine.take_rows(states, [0] * 4), [None] * 4, temperature=1.0, **options)
    assert len({d.tokens for d in drawn}) > 1


@pytest.mark.parametrize("name", backends())
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_logprobs_are_the_picked_tokens_log_softmax_of_the_scores(name, temperature, checkpoints, features):
    """``generate(output_logprobs=True)`` computes in the loop what a transcription needs from the scores:
    each generated token's log-softmax under its step's processed logits. Checked against ``output_scores``
    from the same call, greedy and sampled, on copies and on distinct rows; beam search refuses it."""
    from whisper_mb.registry import load_backend

    engine = load_backend(name, str(checkpoints["generation"]))
    states = engine.take_rows(engine.encode(features), [0, 0, 1])
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, **engine.sampling_kwargs(3)}
    out = engine.model.generate(
        encoder_outputs=states,
        language="en",
        max_new_tokens=12,
        output_scores=True,
        output_logprobs=True,
        **(sampling if temperature else {}),
    )
    scores = np.stack([np.asarray(step, np.float64) for step in out.scores], axis=1)  # [rows, steps, vocab]
    logprobs = np.asarray(out.logprobs)
    sequences = np.asarray(out.sequences)
    assert logprobs.shape == scores.shape[:2]
    picked = sequences[:, sequences.shape[1] - logprobs.shape[1] :]
    peak = scores.max(axis=-1, keepdims=True)
    log_softmax = scores - (np.log(np.exp(scores - peak).sum(axis=-1, keepdims=True)) + peak)
    expected = np.take_along_axis(log_softmax, picked[..., None], axis=-1)[..., 0]
    assert np.isfinite(logprobs).all()
    np.testing.assert_allclose(logprobs, expected, atol=1e-4)
    with pytest.raises(ValueError, match="output_logprobs"):
        engine.model.generate(encoder_outputs=states, language="en", num_beams=2, output_logprobs=True)
