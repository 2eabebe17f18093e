"""openai-whisper ``.pt`` checkpoints: ``{"dims": {...}, "model_state_dict": {...}}`` saved with ``torch.save``.

``dims`` is openai-whisper's ``ModelDimensions``; the state dict uses its module names (the
``openai`` column of :mod:`weights_bridge.rules`) and PyTorch layouts, with the token embedding
doubling as the output projection and the encoder's sinusoidal ``positional_embedding`` stored as a
(persistent) buffer. openai-whisper fixes what HF's config leaves open: GELU, feed-forward width
4·d, one width for encoder and decoder, no embedding scaling; a config outside that is refused
rather than written into a file openai-whisper would load wrongly.

torch is imported only inside the functions that read or write a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from whisper_core.config import MULTILINGUAL_VOCAB_SIZE, WhisperConfig
from whisper_core.fileio import atomic_path

from . import engine

FORMAT = "openai"
# ModelDimensions field -> the WhisperConfig attribute it equals.
DIMS: dict[str, str] = {
    "n_mels": "num_mel_bins",
    "n_vocab": "vocab_size",
    "n_audio_ctx": "max_source_positions",
    "n_audio_state": "d_model",
    "n_audio_head": "encoder_attention_heads",
    "n_audio_layer": "encoder_layers",
    "n_text_ctx": "max_target_positions",
    "n_text_state": "d_model",
    "n_text_head": "decoder_attention_heads",
    "n_text_layer": "decoder_layers",
}
FFN_MULTIPLE = 4  # openai-whisper's MLP: Linear(d, 4·d), GELU, Linear(4·d, d)
# <|endoftext|> ends the byte-pair vocabulary: 50256 in gpt2.tiktoken, 50257 in multilingual.tiktoken;
# <|startoftranscript|> follows it.
END_OF_TEXT = {False: 50256, True: 50257}


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError("openai-whisper .pt files need PyTorch: pip install 'whisper-multibackend[torch]'") from None
    return torch


def config_from_dims(dims: Mapping[str, int], *, source: str = "dims") -> WhisperConfig:
    """The HF ``WhisperConfig`` of an openai-whisper ``ModelDimensions`` (token ids as in HF's hub configs)."""
    missing = sorted(set(DIMS) - set(dims))
    if missing:
        raise ValueError(f"{source}: dims lack {missing}")
    if dims["n_audio_state"] != dims["n_text_state"]:
        raise ValueError(f"{source}: n_audio_state {dims['n_audio_state']} != n_text_state {dims['n_text_state']}")
    multilingual = dims["n_vocab"] >= MULTILINGUAL_VOCAB_SIZE
    eos = END_OF_TEXT[multilingual]
    values = {attribute: int(dims[field]) for field, attribute in DIMS.items()}
    if values["vocab_size"] > eos + 1:
        ids = {
            "decoder_start_token_id": eos + 1,
            "eos_token_id": eos,
            "pad_token_id": eos,
            "bos_token_id": eos
            if multilingual
            else eos + 1,  # as HF's hub files (see fetching.config_from_ctranslate2)
            "begin_suppress_tokens": [220, eos],
        }
    else:  # not one of OpenAI's vocabularies (a test model): no special token ids are known
        ids = dict.fromkeys(("decoder_start_token_id", "eos_token_id", "pad_token_id", "bos_token_id"))
        ids["begin_suppress_tokens"] = None
    return WhisperConfig(
        **values,
        **ids,
        encoder_ffn_dim=FFN_MULTIPLE * values["d_model"],
        decoder_ffn_dim=FFN_MULTIPLE * values["d_model"],
        max_length=values["max_target_positions"],
        architectures=["WhisperForConditionalGeneration"],
    )


def dims_from_config(config: WhisperConfig) -> dict[str, int]:
    """openai-whisper's ``ModelDimensions`` for ``config``, refusing configs openai-whisper cannot express."""
    problems = []
    for name in ("encoder_ffn_dim", "decoder_ffn_dim"):
        if getattr(config, name) != FFN_MULTIPLE * config.d_model:
            problems.append(f"{name} {getattr(config, name)} is not {FFN_MULTIPLE} x d_model {config.d_model}")
    if config.activation_function != "gelu":
        problems.append(f"activation {config.activation_function!r} is not 'gelu'")
    if config.scale_embedding:
        problems.append("scale_embedding is set")
    if problems:
        raise ValueError(f"openai-whisper cannot represent this config: {'; '.join(problems)}")
    return {field: int(getattr(config, attribute)) for field, attribute in DIMS.items()}


def read(path: str | os.PathLike) -> tuple[WhisperConfig, dict[str, np.ndarray]]:
    """The config (from ``dims``) and stored canonical tensors of an openai-whisper ``.pt`` file.

    Loaded with ``weights_only=True`` (no code runs from the file) and memory-mapped when the file is
    in torch's zip format, so tensors are only paged in as they are converted.
    """
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no openai-whisper checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):  # legacy (pre-zip) files cannot be mapped: read them whole
            raise ValueError(f"{path}: not a readable PyTorch checkpoint: {error}") from error
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad pickle or zip
        raise ValueError(f"{path}: not a readable PyTorch checkpoint: {error}") from error
    if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= set(checkpoint):
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path}: not an openai-whisper checkpoint (needs 'dims' and 'model_state_dict', has {keys})")
    config = config_from_dims(checkpoint["dims"], source=str(path))
    foreign: dict[str, np.ndarray] = {}
    for name, tensor in checkpoint["model_state_dict"].items():
        if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16: widened exactly (see .bfloat16)
            tensor = tensor.float()
        foreign[name] = tensor.numpy()
    if foreign:
        config = WhisperConfig.from_dict({**config.to_dict(), "torch_dtype": str(next(iter(foreign.values())).dtype)})
    return config, engine.to_canonical(foreign, FORMAT, config, source=str(path))


def write(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], config: WhisperConfig) -> Path:
    """Write stored canonical tensors (lazy or not) as an openai-whisper ``.pt`` file, atomically."""
    torch = _torch()
    path = Path(path)
    dims = dims_from_config(config)
    foreign = engine.foreign_view(tensors, FORMAT, config, source="the weights to save")
    state = {}
    for name, array in foreign.items():
        array = np.ascontiguousarray(array)
        state[name] = torch.from_numpy(array if array.flags.writeable else array.copy())
    with atomic_path(path) as temp_path:
        torch.save({"dims": dims, "model_state_dict": state}, temp_path)
    return path
