"""``from_pretrained`` / ``save_pretrained`` for the PyTorch models, through :mod:`weights_bridge`.

The bridge reads every supported checkpoint layout into canonical (HF PyTorch) names, checks names
and shapes strictly and matches them with the model's state dict (:data:`weights_bridge.rules.STATE_DICT`:
the canonical names, without ``model.`` in ``WhisperModel`` and ``WhisperForAudioClassification``, as
transformers has them); this module only copies those arrays into the model's parameters and reads
them back.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from weights_bridge import pretrained, quantization, rules
from whisper_core.config import WhisperConfig
from whisper_core.generation_config import GenerationConfig

from .int8 import Int8Linear

DTYPES = {name: getattr(torch, name) for name in pretrained.WEIGHT_DTYPES}
# The ``torch.nn.init`` functions that torch's own modules call from their constructors.
_RANDOM_INITS = ("kaiming_uniform_", "uniform_", "normal_")


def _skip_random_init_while_weights_come() -> None:
    """Make the random fills of ``torch.nn.init`` that module constructors call return their tensor untouched
    while a checkpoint's weights are coming (:func:`weights_bridge.pretrained.weights_to_come`), as
    transformers' ``no_init_weights`` does; otherwise (every other caller, every other thread), each wrapper
    calls the function it wraps. Checked at every load, not once:
    transformers puts back the functions it found at its import when its ``no_init_weights`` ends. Building
    on the meta device would skip the fills too, but its first use imports sympy and torch's reference ops
    (1.0 s)."""
    for name in _RANDOM_INITS:
        current = getattr(torch.nn.init, name)
        if getattr(current, "skips_while_weights_come", False):
            continue

        @functools.wraps(current)
        def unless_weights_come(tensor: torch.Tensor, *args: Any, _wrapped: Any = current, **kwargs: Any) -> Any:
            return tensor if pretrained.weights_to_come() else _wrapped(tensor, *args, **kwargs)

        unless_weights_come.skips_while_weights_come = True
        setattr(torch.nn.init, name, unless_weights_come)


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
    """Copy canonical ``tensors`` into ``model``; every model tensor must be given (except tied ones, new
    heads and the int8 weights that :func:`quantize_linears` gave already) and every shape must match, all
    checked before anything is copied."""
    int8 = {
        f"{path}.{name}"
        for path, module in model.named_modules()
        if isinstance(module, Int8Linear)
        for name in Int8Linear.WEIGHT_BUFFERS
    }
    state = model.state_dict()
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items() if name not in int8}
    arrays = pretrained.match_parameters(
        tensors, rules.STATE_DICT, shapes, model.config, source=source, model=type(model).__name__
    )
    with torch.no_grad():
        for name, array in arrays.items():
            state[name].copy_(torch.from_numpy(np.require(array, requirements=("C", "W"))))


def quantize_linears(model: torch.nn.Module, weights: dict[str, quantization.Int8Weight]) -> None:
    """Swap the Linear modules of the bridge's int8 ``weights`` (canonical names) for :class:`Int8Linear`
    modules holding exactly those int8 values and per-channel scales; the tied output projection takes
    the embedding's."""
    paths = {
        name: path
        for name, (path, _) in rules.parameter_names(
            rules.STATE_DICT, model.config, with_prefix=_has_prefix(model)
        ).items()
    }
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    state = model.state_dict()
    for name, weight in weights.items():
        if name not in paths or paths[name] not in state:  # the decoder, for a classification model
            continue
        if name == quantization.OUTPUT_PROJECTION:
            if output is None:  # WhisperModel: the embedding has no projection to quantize
                continue
            module_path = _module_path(model, output)
        else:
            module_path = paths[name].removesuffix(".weight")
        parent_path, _, leaf = module_path.rpartition(".")
        parent = model.get_submodule(parent_path)
        linear = getattr(parent, leaf)
        if tuple(weight.values.shape) != tuple(linear.weight.shape):
            raise ValueError(
                f"int8 {name} has shape {weight.values.shape}, the model expects {tuple(linear.weight.shape)}"
            )
        values, scales = torch.from_numpy(weight.values), torch.from_numpy(weight.scales)
        setattr(parent, leaf, Int8Linear(values, scales, linear.bias))


def _has_prefix(model: torch.nn.Module) -> bool:
    return any(name.startswith(rules.STATE_DICT.prefix) for name, _ in model.named_parameters())


def _module_path(model: torch.nn.Module, module: torch.nn.Module) -> str:
    return next(path for path, candidate in model.named_modules() if candidate is module)


def _int8_linears(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [module for module in model.modules() if isinstance(module, Int8Linear)]


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
        compute_type: str | None = None,
        **config_overrides: Any,
    ) -> Any:
        """Load a checkpoint directory (canonical safetensors, sharded, or HF ``pytorch_model.bin``) or hub id.

        Weights are cast to ``torch_dtype`` (or ``dtype``, its newer transformers name; float32 by default,
        "auto" = as stored); ``config_overrides`` change config values (dropout, SpecAugment,
        ``num_labels``, ...). ``compute_type`` (faster-whisper's names, :mod:`weights_bridge.quantization`)
        replaces the dtype: float32, float16, bfloat16, or int8 / int8_float32 (int8 Linear weights multiplied
        as CTranslate2 does, :class:`~whisper_pt.int8.Int8Linear`, everything else float32; CPU only).
        """
        if torch_dtype is not None and dtype is not None and torch_dtype != dtype:
            raise ValueError(f"torch_dtype={torch_dtype!r} and dtype={dtype!r} disagree: give one")
        torch_dtype = quantization.weights_dtype(
            compute_type, torch_dtype if torch_dtype is not None else dtype, dtype_name="torch_dtype"
        )
        if quantization.is_int8(compute_type) and device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"compute_type={compute_type!r} runs on CPU integer kernels only: use float16 on {device}")
        checkpoint = pretrained.load(
            pretrained_model_name_or_path, has_heads=cls.has_classification_heads, config=config, **config_overrides
        )
        arguments = checkpoint.model_arguments
        if quantization.is_int8(compute_type):
            arguments["tensors"], arguments["int8"] = quantization.quantize_tensors(
                checkpoint.tensors, integer_kernels=True
            )
        model = cls.from_canonical(**arguments, torch_dtype=_resolve_dtype(torch_dtype, checkpoint))
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
        int8: dict[str, quantization.Int8Weight] | None = None,
    ) -> Any:
        """A model in eval mode from canonical (HF PyTorch-named) arrays: what every backend exchanges.
        ``int8``: Linear weights given as int8 instead (``tensors`` then lacks them), held by
        :class:`Int8Linear` modules; ``torch_dtype`` applies to the other weights."""
        _skip_random_init_while_weights_come()
        with pretrained.building_for_checkpoint(cls.has_classification_heads):
            model = cls(config)
        if int8:
            quantize_linears(model, int8)
        load_state(model, tensors, source)
        model.to(dtype=torch_dtype).eval()
        if generation_config is not None and hasattr(model, "generation_config"):
            model.generation_config = generation_config
        return model

    def get_memory_footprint(self) -> int:
        """Bytes of the weights the model holds (parameters and buffers, the int8 Linear weights among them),
        as transformers' ``get_memory_footprint``: compare compute types with it."""
        return sum(t.numel() * t.element_size() for t in [*self.parameters(), *self.buffers()])

    def canonical_tensors(self) -> dict[str, np.ndarray]:
        """The weights under canonical names as NumPy arrays (tied ``proj_out`` left out).

        bfloat16 has no NumPy dtype, so bfloat16 weights come out as float32 (exactly representable).
        """
        if _int8_linears(self):
            raise ValueError("an int8 model's weights cannot be read back: load the checkpoint in float32 to save it")
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
