"""The weight table and the strict engine, on a small random config (no real weights needed)."""

from __future__ import annotations

import numpy as np
import pytest

from weights_bridge import engine
from weights_bridge.rules import FORMATS, RULES, Part

from .helpers import assert_bit_identical, random_weights, small_config


def test_every_rule_has_a_column_for_every_format():
    for rule in RULES:
        assert set(rule.names) == set(FORMATS), rule.canonical


def test_canonical_names_match_transformers_state_dict():
    """The stored canonical set is exactly what transformers' WhisperForConditionalGeneration saves."""
    config = small_config()
    shapes = engine.canonical_shapes(config)
    assert len(shapes) == 11 + 2 * 15 + 2 * 24  # stems + encoder layers + decoder layers
    assert "proj_out.weight" not in shapes
    assert shapes["model.encoder.conv1.weight"] == (8, 4, 3)
    assert shapes["model.decoder.layers.1.fc1.weight"] == (12, 8)
    assert shapes["model.encoder.layers.1.fc2.weight"] == (8, 16)
    assert shapes["model.decoder.embed_positions.weight"] == (5, 8)
    assert "model.encoder.layers.0.self_attn.k_proj.bias" not in shapes
    assert engine.tied_names(config) == {"proj_out.weight": "model.decoder.embed_tokens.weight"}
    assert engine.tied_names(config, "ct2") == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert engine.tied_names(config, "openai") == {}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip_is_bit_identical(fmt, dtype):
    config = small_config()
    weights = random_weights(config, dtype)
    foreign = engine.from_canonical(weights, fmt, config)
    assert all(array.dtype == np.dtype(dtype) for array in foreign.values())
    assert_bit_identical(engine.to_canonical(foreign, fmt, config), weights)


def test_ct2_fuses_attention_with_zero_k_bias():
    config = small_config()
    weights = random_weights(config)
    foreign = engine.from_canonical(weights, "ct2", config)
    qkv = foreign["encoder/layer_1/self_attention/linear_0/weight"]  # [3·d, d]
    assert qkv.shape == (24, 8)
    assert qkv[8:16].tobytes() == weights["model.encoder.layers.1.self_attn.k_proj.weight"].tobytes()
    bias = foreign["decoder/layer_0/self_attention/linear_0/bias"]  # [q | zeros | v]
    assert not bias[8:16].any()
    assert bias[16:].tobytes() == weights["model.decoder.layers.0.self_attn.v_proj.bias"].tobytes()
    kv_bias = foreign["decoder/layer_0/attention/linear_1/bias"]  # [zeros | v]
    assert kv_bias.shape == (16,) and not kv_bias[:8].any()
    assert foreign["decoder/layer_0/attention/linear_0/weight"].tobytes() == (
        weights["model.decoder.layers.0.encoder_attn.q_proj.weight"].tobytes()
    )
    assert "decoder/layer_0/attention/linear_2/weight" in foreign


def test_non_zero_k_bias_is_refused():
    config = small_config()
    foreign = engine.from_canonical(random_weights(config), "ct2", config)
    foreign["encoder/layer_0/self_attention/linear_0/bias"][9] = 1.0
    with pytest.raises(ValueError, match=r"model\.bin: slice 1 of encoder/layer_0/self_attention/linear_0/bias"):
        engine.to_canonical(foreign, "ct2", config, source="model.bin")


def test_missing_unexpected_and_misshapen_tensors_are_named():
    config = small_config()
    foreign = engine.from_canonical(random_weights(config), "openai", config)
    missing = dict(foreign)
    del missing["decoder.blocks.1.cross_attn.key.weight"]
    with pytest.raises(
        ValueError, match=r"x\.pt: .*missing 1 tensor\(s\): decoder\.blocks\.1\.cross_attn\.key\.weight"
    ):
        engine.to_canonical(missing, "openai", config, source="x.pt")
    extra = {**foreign, "decoder.blocks.2.attn.query.weight": np.zeros((8, 8), "float16")}
    with pytest.raises(ValueError, match=r"unexpected 1 tensor\(s\): decoder\.blocks\.2\.attn\.query\.weight"):
        engine.to_canonical(extra, "openai", config, source="x.pt")
    wrong = {**foreign, "encoder.conv1.weight": np.zeros((8, 3, 3), "float16")}
    with pytest.raises(
        ValueError, match=r"x\.pt: tensor encoder\.conv1\.weight has shape \(8, 3, 3\), the config expects \(8, 4, 3\)"
    ):
        engine.to_canonical(wrong, "openai", config, source="x.pt")


def test_tied_projection_is_dropped_only_when_equal():
    config = small_config()
    weights = random_weights(config)
    with_proj = {**weights, "proj_out.weight": weights["model.decoder.embed_tokens.weight"].copy()}
    assert_bit_identical(engine.drop_tied(with_proj, config), weights)
    with_proj["proj_out.weight"][0, 0] += 1
    with pytest.raises(
        ValueError, match=r"pytorch_model\.bin: proj_out\.weight differs from model\.decoder\.embed_tokens\.weight"
    ):
        engine.drop_tied(with_proj, config, source="pytorch_model.bin")


def test_unknown_format_and_bad_part_are_refused():
    with pytest.raises(ValueError, match="unknown weight format"):
        engine.from_canonical(random_weights(small_config()), "keras", small_config())
    with pytest.raises(ValueError, match="bad fused part"):
        Part("x", "fused_kv", 2)
