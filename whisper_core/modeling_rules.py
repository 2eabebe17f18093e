"""Rules of the three backends' ``modeling.py`` that are not framework arithmetic, written once.

The encoder's sinusoidal position table (one formula over the array module each backend passes
in), which output flags a call resolves from the config, and the labels' length limit. Nothing here
imports a framework: a backend passes its own array module (``torch``, ``numpy``, ``jax.numpy``).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from .config import WhisperConfig

# transformers' defaults for the per-call flags a config can set (``config.return_dict`` etc.).
FLAG_DEFAULTS = {"output_attentions": False, "output_hidden_states": False, "use_cache": True, "return_dict": True}


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0, xp: ModuleType = np) -> Any:
    """The encoder's fixed position table ``[length, channels]`` in float32: sines then cosines (openai/whisper).

    ``xp`` is the array module that computes it (``numpy``, ``torch`` or ``jax.numpy``): each backend
    keeps its own ``exp``/``sin``/``cos``, whose float32 results differ between frameworks by a few
    ulps (up to 2.5e-4 in the table once scaled by 1500 positions), so whisper_pt's table stays transformers'
    PyTorch one to the bit and whisper_flax's its Flax one. The Python float times a float32 array
    stays float32 in all three (a weak scalar).
    """
    if channels % 2:
        raise ValueError(f"sinusoidal positions need an even number of channels, got {channels}")
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = xp.exp(-log_increment * xp.arange(channels // 2, dtype=xp.float32))
    scaled_time = xp.arange(length, dtype=xp.float32)[:, None] * inv_timescales[None, :]  # [length, channels // 2]
    return xp.concatenate([xp.sin(scaled_time), xp.cos(scaled_time)], axis=1)


def config_flag(value: bool | None, config: WhisperConfig, name: str) -> bool:
    """An explicit argument, else the config's value, else transformers' default (:data:`FLAG_DEFAULTS`)."""
    return value if value is not None else getattr(config, name, FLAG_DEFAULTS[name])


def check_labels_length(length: int | None, max_target_positions: int) -> None:
    """Labels ``[b, length]`` must fit the decoder's position table (transformers' check and message).

    ``length`` is None when it is unknown while tracing (TensorFlow); the check is then left out.
    """
    if length is not None and length > max_target_positions:
        raise ValueError(
            f"Labels' sequence length {length} cannot exceed the maximum allowed length of "
            f"{max_target_positions} tokens (config.max_target_positions)."
        )
