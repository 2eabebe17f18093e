"""``from_pretrained`` / ``save_pretrained`` for the PyTorch models, through :mod:`weights_bridge`.

The bridge reads every supported checkpoint layout into canonical (HF PyTorch) names, checks names
and shapes strictly and matches them with the model's state dict (:data:`weights_bridge.rules.STATE_DICT`:
the canonical names, without ``model.`` in ``WhisperModel`` and ``WhisperForAudioClassification``, as
transformers has them); this module only copies those arrays into the model's parameters and reads
them back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from weights_bridge import pretrained, rules
from whisper_core.config import WhisperConfig
from whisper_core.generation_config import GenerationConfig

DTYPES = {name: getattr(torch, name) for name in pretrained.WEIGHT_DTYPES}


def _resolve_dtype(torch_dtype: str | torch.dtype | None, checkpoint: pretrained.Pretrained) -> torch.dtype:
    """float32 unless asked; "auto" takes the checkpoint's own dtype (often float16)."""
    torch_dtype = checkpoint.dtype(torch_dtype)
    if isinstance(torch_dtype, str):
        if torch_dtype not in DTYPES:
            raise ValueError(f"torch_dtype must be one of {sorted(DTYPES)} or 'auto', got {torch_dtype!r}")
        return DTYPES[torch_dtype]
    if torch_dtype not in DTYPES.values():
        raise ValueError(f"unsupported torch_dtype {torch_dtype}")
    return torch_dtype


def load_state(model: torch.nn.Module, tensors: dict[str, np.ndarray], source: str) -> None:
    """Copy canonical ``tensors`` into ``model``; every model tensor must be given (except tied ones and new
    heads) and every shape must match, all checked before anything is copied."""
    state = model.state_dict()
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items()}
    arrays = pretrained.match_parameters(
        tensors, rules.STATE_DICT, shapes, model.config, source=source, model=type(model).__name__
    )
    with torch.no_grad():
        for name, array in arrays.items():
            state[name].copy_(torch.from_numpy(np.require(array, requirements=("C", "W"))))


class CheckpointMixin:
    """``from_pretrained`` and ``save_pretrained`` with transformers' signatures."""

    # A model with heads of its own (audio classification) loads any checkpoint of the same encoder.
    has_classification_heads: ClassVar[bool] = False

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        torch_dtype: str | torch.dtype | None = None,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        config: WhisperConfig | None = None,
        **config_overrides: Any,
    ) -> Any:
        """Load a checkpoint directory (canonical safetensors, sharded, or HF ``pytorch_model.bin``) or hub id.

        Weights are cast to ``torch_dtype`` (or ``dtype``, its newer transformers name; float32 by default,
        "auto" = as stored); ``config_overrides`` change config values (dropout, SpecAugment,
        ``num_labels``, ...).
        """
        if torch_dtype is not None and dtype is not None and torch_dtype != dtype:
            raise ValueError(f"torch_dtype={torch_dtype!r} and dtype={dtype!r} disagree: give one")
        torch_dtype = torch_dtype if torch_dtype is not None else dtype
        checkpoint = pretrained.load(
            pretrained_model_name_or_path, has_heads=cls.has_classification_heads, config=config, **config_overrides
        )
        model = cls.from_canonical(**checkpoint.model_arguments, torch_dtype=_resolve_dtype(torch_dtype, checkpoint))
        return model.to(device=device) if device is not None else model

    @classmethod
    def from_canonical(
        cls,
        config: WhisperConfig,
        tensors: dict[str, np.ndarray],
        generation_config: GenerationConfig | None = None,
        *,
        torch_dtype: torch.dtype = torch.float32,
        source: str = "the canonical tensors",
    ) -> Any:
        """A model in eval mode from canonical (HF PyTorch-named) arrays: what every backend exchanges."""
        model = cls(config)
        load_state(model, tensors, source)
        model.to(dtype=torch_dtype).eval()
        if generation_config is not None and hasattr(model, "generation_config"):
            model.generation_config = generation_config
        return model

    def canonical_tensors(self) -> dict[str, np.ndarray]:
        """The weights under canonical names as NumPy arrays (tied ``proj_out`` left out).

        bfloat16 has no NumPy dtype, so bfloat16 weights come out as float32 (exactly representable).
        """
        state = {name: _to_numpy(tensor) for name, tensor in self.state_dict().items()}
        return pretrained.canonical_tensors(state, rules.STATE_DICT, self.config)

    def save_pretrained(self, save_directory: str | os.PathLike, *, max_shard_size: int | None = None) -> Path:
        """Write config.json, generation_config.json (when the model has one) and model.safetensors
        (sharded above ``max_shard_size`` bytes), each file atomically."""
        if self.dtype == torch.bfloat16:
            raise ValueError(
                "bfloat16 weights cannot be written through NumPy safetensors yet: save model.float() or model.half()"
            )
        generation_config = getattr(self, "generation_config", None)
        return pretrained.save(
            save_directory, self.canonical_tensors(), self.config, generation_config, max_shard_size=max_shard_size
        )


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
