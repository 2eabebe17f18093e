"""whisper_core.modeling_rules: the rules the three backends' modeling.py share."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_core.config import WhisperConfig
from whisper_core.modeling_rules import FLAG_DEFAULTS, check_labels_length, config_flag, sinusoids


@pytest.mark.parametrize("length,channels", [(1500, 384), (1500, 1280), (7, 4)])
def test_sinusoids_are_openai_whisper_in_float32(length, channels):
    increment = np.log(10000.0) / (channels // 2 - 1)
    scaled = np.arange(length)[:, None] * np.exp(-increment * np.arange(channels // 2))[None, :]
    reference = np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1)  # float64
    table = sinusoids(length, channels)
    assert table.dtype == np.float32 and table.shape == (length, channels)
    # float32 rounding of the increments, scaled by up to 1500 positions.
    assert np.max(np.abs(table - reference)) <= 4e-4


def test_sinusoids_need_even_channels():
    with pytest.raises(ValueError, match="even number of channels"):
        sinusoids(10, 7)


def test_config_flag_prefers_the_argument_then_the_config_then_the_default():
    config = WhisperConfig(return_dict=False)
    assert config_flag(None, config, "return_dict") is False
    assert config_flag(True, config, "return_dict") is True
    assert config_flag(None, config, "use_cache") is True  # a WhisperConfig attribute
    assert config_flag(None, config, "output_attentions") is FLAG_DEFAULTS["output_attentions"] is False
    assert config_flag(None, WhisperConfig(), "return_dict") is True
    with pytest.raises(KeyError):
        config_flag(None, WhisperConfig(), "not_a_flag")


def test_labels_length():
    check_labels_length(448, 448)
    check_labels_length(None, 448)  # unknown while tracing
    with pytest.raises(
        ValueError, match=r"Labels' sequence length 449 cannot exceed the maximum allowed length of 448"
    ):
        check_labels_length(449, 448)
