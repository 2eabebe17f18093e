"""A small random Whisper config and weights, for tests that need no real checkpoint."""

from __future__ import annotations

import numpy as np

from weights_bridge.engine import canonical_shapes
from whisper_core import WhisperConfig
from whisper_core.modeling_rules import sinusoids


def small_config() -> WhisperConfig:
    return WhisperConfig(
        vocab_size=64,
        num_mel_bins=4,
        d_model=8,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=12,
        max_source_positions=6,
        max_target_positions=5,
        decoder_start_token_id=1,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=0,
    )


ENCODER_POSITIONS = "model.encoder.embed_positions.weight"


def random_weights(config: WhisperConfig, dtype: str = "float16", seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights, except the encoder positions: Whisper's fixed sinusoids, as in every real checkpoint
    (mlx-whisper computes them instead of storing them, and refuses a checkpoint whose differ)."""
    rng = np.random.default_rng(seed)
    weights = {name: rng.standard_normal(shape).astype(dtype) for name, shape in canonical_shapes(config).items()}
    weights[ENCODER_POSITIONS] = sinusoids(*weights[ENCODER_POSITIONS].shape).astype(dtype)
    return weights


def assert_bit_identical(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, array in expected.items():
        assert actual[name].dtype == array.dtype, name
        assert actual[name].shape == array.shape, name
        assert actual[name].tobytes() == array.tobytes(), name
