"""Check a conversion: the written weights read back bit for bit, and the PyTorch logits agree.

The written file is read back through the bridge from the format that was written (``tf_model.h5``
or ``flax_model.msgpack`` for those targets, not the canonical safetensors beside them), then both
sides are loaded into the PyTorch backend and run on the first seconds of real audio. torch is
imported only inside :func:`verify_conversion`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from weights_bridge import canonical, conversion, engine
from weights_bridge.rules import FORMATS
from whisper_core.audio import load_audio
from whisper_core.feature_extraction import WhisperFeatureExtractor

from .registry import backend

# Decoder prompt for the logits check: <|startoftranscript|> then a few ordinary text ids.
TEXT_IDS = (464, 2068, 7586)


def _logits(tensors: Mapping[str, np.ndarray], config: Any, features: np.ndarray, prompt: list[int]) -> np.ndarray:
    import torch

    with tempfile.TemporaryDirectory() as directory:
        canonical.save_checkpoint(directory, tensors, config)
        model = backend("pt").model_class().from_pretrained(directory)  # float32
    with torch.no_grad():
        output = model(input_features=torch.from_numpy(features), decoder_input_ids=torch.tensor([prompt]))
    return output.logits.numpy()  # [1, len(prompt), vocab]


def verify_conversion(
    src: str | os.PathLike, dst: str | os.PathLike, to: str, audio: str | os.PathLike, *, seconds: float = 2.0
) -> dict[str, Any]:
    """Compare source and written checkpoint: tensor bytes (when dtypes agree) and PyTorch logits on ``audio``.

    Tensors the target does not store because its runtime computes them (mlx-whisper's encoder
    positions) are listed as ``recomputed``, not as differing: the logits show what that changes."""
    source = conversion.read_checkpoint(src)
    source_tensors = dict(source.tensors)
    written = dict(conversion.read_written(dst, to, source.config))
    recomputed = engine.computed_names(source.config, to) if to in FORMATS else []
    differing = sorted(
        name
        for name, array in source_tensors.items()
        if name not in recomputed and array.dtype == written[name].dtype and array.tobytes() != written[name].tobytes()
    )
    cast = sorted(name for name, array in source_tensors.items() if array.dtype != written[name].dtype)
    extractor = WhisperFeatureExtractor(feature_size=source.config.num_mel_bins)
    samples = load_audio(audio)[: int(seconds * extractor.sampling_rate)]
    features = extractor(samples, sampling_rate=extractor.sampling_rate, return_tensors="np")["input_features"]
    prompt = [source.config.decoder_start_token_id, *(i for i in TEXT_IDS if i < source.config.vocab_size)]
    before = _logits(source_tensors, source.config, features, prompt)
    after = _logits(written, source.config, features, prompt)
    return {
        "tensors": len(source_tensors),
        "bit_identical": sum(
            array.dtype == written[name].dtype and array.tobytes() == written[name].tobytes()
            for name, array in source_tensors.items()
        ),
        "differing": differing,
        "recomputed": recomputed,
        "cast": len(cast),
        "max_abs_logit_diff": float(np.max(np.abs(before - after))),
    }
