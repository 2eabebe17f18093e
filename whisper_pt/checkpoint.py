"""``from_pretrained`` / ``save_pretrained`` for the PyTorch models, through :mod:`weights_bridge`.

The bridge reads every supported checkpoint layout into canonical (HF PyTorch) names and
checks names and shapes strictly; this module only turns those arrays into the model's
parameters. Canonical names belong to ``WhisperForConditionalGeneration``; models without the
``model.`` wrapper (``WhisperModel``) or with their own heads (``WhisperForAudioClassification``)
take the matching part, as transformers does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from weights_bridge import canonical
from whisper_core.config import WhisperConfig
from whisper_core.generation_config import GENERATION_CONFIG_NAME, GenerationConfig
from whisper_core.hub import resolve_file

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CANONICAL_PREFIX = "model."


def _resolve_dtype(torch_dtype: str | torch.dtype | None, config: WhisperConfig) -> torch.dtype:
    """float32 unless asked; "auto" takes the checkpoint's own dtype (often float16)."""
    if torch_dtype is None:
        return torch.float32
    if torch_dtype == "auto":
        torch_dtype = config.extra.get("torch_dtype") or config.extra.get("dtype") or "float32"
    if isinstance(torch_dtype, str):
        if torch_dtype not in DTYPES:
            raise ValueError(f"torch_dtype must be one of {sorted(DTYPES)} or 'auto', got {torch_dtype!r}")
        return DTYPES[torch_dtype]
    if torch_dtype not in DTYPES.values():
        raise ValueError(f"unsupported torch_dtype {torch_dtype}")
    return torch_dtype


def _checkpoint_dir(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        return path
    return resolve_file(name_or_path, "config.json").parent  # hub id: the snapshot directory


def _for_model(model: torch.nn.Module, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical names -> this model's state-dict names (strip ``model.`` for prefix-less models)."""
    expected = set(model.state_dict())
    if any(name.startswith(CANONICAL_PREFIX) for name in expected):
        return tensors
    return {name.removeprefix(CANONICAL_PREFIX): array for name, array in tensors.items()}


def load_state(model: torch.nn.Module, tensors: dict[str, np.ndarray], source: str) -> None:
    """Copy ``tensors`` into ``model``; every model tensor must be given (except tied ones and new heads)."""
    tensors = _for_model(model, tensors)
    state = model.state_dict()
    tied = {"proj_out.weight"} if getattr(model.config, "tie_word_embeddings", True) else set()
    heads = {name for name in state if name.startswith(("projector.", "classifier.", "layer_weights"))}
    missing = sorted(set(state) - set(tensors) - tied - heads)
    if missing:
        raise ValueError(f"{source} lacks {len(missing)} tensors of {type(model).__name__}: {missing[:8]}")
    unused = sorted(set(tensors) - set(state))
    if unused and not all(name.startswith(("model.decoder.", "decoder.", "proj_out.")) for name in unused):
        raise ValueError(f"{source} has tensors {type(model).__name__} does not know: {unused[:8]}")
    new_heads = sorted(heads - set(tensors))
    if new_heads:
        logger.warning("%s: newly initialised (train them): %s", type(model).__name__, new_heads)
    with torch.no_grad():
        for name, array in tensors.items():
            if name not in state:
                continue
            if tuple(array.shape) != tuple(state[name].shape):
                raise ValueError(
                    f"{source}: {name} has shape {tuple(array.shape)}, the model expects {tuple(state[name].shape)}"
                )
            state[name].copy_(torch.from_numpy(np.require(array, requirements=("C", "W"))))


class CheckpointMixin:
    """``from_pretrained`` and ``save_pretrained`` with transformers' signatures."""

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
        directory = _checkpoint_dir(pretrained_model_name_or_path)
        stored_config = WhisperConfig.from_pretrained(directory)
        # Models with heads of their own (audio classification) check names against themselves.
        tensors = canonical.load_weights(
            directory, stored_config, strict=cls.__name__ != "WhisperForAudioClassification"
        )
        config = (config or stored_config).with_overrides(**config_overrides)
        generation_config = None
        if (directory / GENERATION_CONFIG_NAME).is_file():
            generation_config = GenerationConfig.from_pretrained(directory)
        model = cls.from_canonical(
            config,
            tensors,
            generation_config,
            torch_dtype=_resolve_dtype(torch_dtype, stored_config),
            source=str(directory),
        )
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
        if not any(name.startswith(CANONICAL_PREFIX) for name in state) and "proj_out.weight" not in state:
            state = {
                CANONICAL_PREFIX + name if name.startswith(("encoder.", "decoder.")) else name: a
                for name, a in state.items()
            }
        return _drop_tied(state, self.config)

    def save_pretrained(self, save_directory: str | os.PathLike, *, max_shard_size: int | None = None) -> Path:
        """Write config.json, generation_config.json (when the model has one) and model.safetensors
        (sharded above ``max_shard_size`` bytes), each file atomically."""
        if self.dtype == torch.bfloat16:
            raise ValueError(
                "bfloat16 weights cannot be written through NumPy safetensors yet: save model.float() or model.half()"
            )
        state = self.canonical_tensors()
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        canonical.save_weights(directory, state, max_shard_bytes=max_shard_size)
        self.config.save_pretrained(directory)
        if hasattr(self, "generation_config"):
            self.generation_config.save_pretrained(directory)
        return directory


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()


def _drop_tied(state: dict[str, np.ndarray], config: WhisperConfig) -> dict[str, np.ndarray]:
    if config.tie_word_embeddings:
        state.pop("proj_out.weight", None)
    return state
