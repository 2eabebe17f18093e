"""``compute_type`` as faster-whisper / CTranslate2 name it, and the int8 weight arithmetic, written once.

Every backend's ``from_pretrained(..., compute_type=...)`` asks here which float dtype to load, which
canonical tensors become int8, and what their int8 values and scales are, so that PyTorch (integer
kernels), TensorFlow and JAX (dequantized on load) all run the same int8 numbers.

int8 is CTranslate2's scheme, with its arithmetic to the bit (so that the int8 values here are the
ones in a CT2 ``model.bin``): symmetric, one float32 factor per output channel (row of a canonical
``[out, in]`` weight; a convolution's [out, in·k]), ``factor = 127 / max|row|`` and ``int8 =
rint(row · factor)`` in float32; an all-zero row gets factor 1 (CT2 takes its max as 127), so it comes
back exactly. CTranslate2 stores the factor; the backends multiply by its inverse, the ``scale``. The quantized tensors are
every Linear weight of the encoder and decoder layers (attention q/k/v/out, fc1, fc2) and the output
projection, which Whisper ties to the token embedding. On CPU ``int8`` and ``int8_float32`` are the same
thing, as in CTranslate2: int8 weights, every other layer and every activation in float32.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

COMPUTE_TYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "int8", "int8_float32")
INT8_TYPES: tuple[str, ...] = ("int8", "int8_float32")

# The tied output projection's canonical name (``proj_out.weight`` is not stored: it is this tensor).
OUTPUT_PROJECTION = "model.decoder.embed_tokens.weight"
UNTIED_OUTPUT_PROJECTION = "proj_out.weight"
_BLOCK_ELEMENTS = 1 << 16  # ct2_int8's scratch: 256 KB of float32, at home in a core's cache
_LINEAR = re.compile(
    r"model\.(encoder|decoder)\.layers\.\d+\.((self_attn|encoder_attn)\.(q|k|v|out)_proj|fc1|fc2)\.weight"
)


def check_compute_type(compute_type: str) -> str:
    """``compute_type`` itself, or a ``ValueError`` that names the valid choices."""
    if compute_type not in COMPUTE_TYPES:
        raise ValueError(f"unknown compute_type {compute_type!r}: choose one of {', '.join(COMPUTE_TYPES)}")
    return compute_type


def float_dtype(compute_type: str) -> str:
    """The dtype of the weights left in floating point (all of them, unless int8) and of the activations."""
    return "float32" if check_compute_type(compute_type) in INT8_TYPES else compute_type


def weights_dtype(compute_type: str | None, dtype: object, *, dtype_name: str = "dtype") -> object:
    """The float dtype a backend's ``from_pretrained`` loads with: ``dtype`` when no ``compute_type`` is
    given (the backend checks it), else the compute type's; asking for both is ambiguous."""
    if compute_type is None:
        return dtype
    if dtype is not None:
        raise ValueError(f"give compute_type={compute_type!r} or {dtype_name}={dtype!r}, not both")
    return float_dtype(compute_type)


def is_int8(compute_type: str | None) -> bool:
    return compute_type is not None and check_compute_type(compute_type) in INT8_TYPES


def is_quantized(name: str) -> bool:
    """Whether the canonical tensor ``name`` is held as int8 under an int8 compute type."""
    return name in (OUTPUT_PROJECTION, UNTIED_OUTPUT_PROJECTION) or _LINEAR.fullmatch(name) is not None


def quantized_names(names: Iterable[str]) -> list[str]:
    """The canonical ``names`` that an int8 model holds as int8 (an untied ``proj_out`` instead of the
    embedding, whose lookup then stays float32)."""
    names = list(names)
    untied = UNTIED_OUTPUT_PROJECTION in names
    return [n for n in names if is_quantized(n) and not (untied and n == OUTPUT_PROJECTION)]


@dataclass(frozen=True)
class Int8Weight:
    """A canonical ``[out, in]`` weight as int8 ``values`` and one float32 ``scales`` entry per row."""

    values: np.ndarray  # int8 [out, in]
    scales: np.ndarray  # float32 [out]

    def dequantize(self) -> np.ndarray:
        return dequantize(self.values, self.scales)

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + self.scales.nbytes


def ct2_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CTranslate2's int8 of a weight (``[out, ...]``, rows along axis 0): ``(int8 values of its shape,
    float32 factors [out])``, where ``values / factor`` is the weight; as ``ctranslate2.specs`` computes it.

    Computed a block of rows at a time in one small float32 scratch array: whole-matrix temporaries (the
    float32 copy of a float16 checkpoint, its absolute values, the scaled rows) cost base's 70 M weights
    about 1 GB of fresh memory, and its page faults took most of the 0.8-1.1 s that quantizing them took
    in a new process (0.25 s now, 2026-12-06)."""
    rows = np.asarray(weight).reshape(len(weight), -1)
    values = np.empty(rows.shape, np.int8)
    factors = np.empty(len(rows), np.float32)
    block = max(1, _BLOCK_ELEMENTS // max(1, rows.shape[1]))
    scratch = np.empty((min(block, len(rows)), rows.shape[1]), np.float32)
    smallest = np.float32(127) / np.finfo(np.float32).max  # keeps the factor finite
    for start in range(0, len(rows), block):
        part = scratch[: len(rows[start : start + block])]
        np.copyto(part, rows[start : start + block], casting="same_kind")
        amax = np.abs(part).max(axis=1)
        amax[amax == 0] = 127.0
        factor = np.float32(127) / np.maximum(amax, smallest)
        factors[start : start + block] = factor
        np.multiply(part, factor[:, None], out=part)
        np.rint(part, out=part)
        values[start : start + block] = np.clip(part, -127, 127, out=part)
    return values.reshape(np.shape(weight)), factors


def dequantize_ct2(values: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """CT2 int8 ``values`` (rows along axis 0) times the float32 inverse of their ``factors``, as its CPU
    kernels dequantize; a scalar factor (int16 weights) applies to the whole tensor."""
    inverse = np.float32(1) / np.asarray(factors, np.float32)
    return values.astype(np.float32) * inverse.reshape(inverse.shape + (1,) * (values.ndim - inverse.ndim))


def quantize(weight: np.ndarray) -> Int8Weight:
    """Symmetric per-row int8 of a ``[out, in]`` weight, CTranslate2's values: ``|weight - dequantize|`` is
    about ``scale / 2`` per row at most."""
    weight = np.asarray(weight)
    if weight.ndim != 2 or not np.issubdtype(weight.dtype, np.floating):
        raise ValueError(f"int8 quantization takes float [out, in] weights, got shape {weight.shape} {weight.dtype}")
    values, factors = ct2_int8(weight)
    return Int8Weight(values, np.float32(1) / factors)


def dequantize(values: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``values [out, in]`` int8 times ``scales [out]``, in float32 (what every backend's int8 weight means)."""
    return values.astype(np.float32) * scales[:, None]


def quantize_tensors(
    tensors: Mapping[str, np.ndarray], *, integer_kernels: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, Int8Weight]]:
    """``(the float tensors to load, the int8 weights)``.

    A backend without int8 kernels (TensorFlow, JAX on CPU) loads the first only: every quantized tensor
    in it replaced by its dequantized float32 values. One with them (PyTorch, ``integer_kernels``) loads
    the int8 weights in place of those tensors, which the first then leaves out, except the token embedding
    tied to the output projection: its lookup stays float, so it comes dequantized. Either way the
    embedding lookup sees the same values as the output projection.

    The weights are quantized one per thread (:func:`_quantizing_threads`): base's in 0.15-0.16 s on two
    cores against 0.26-0.69 s one weight after another (first quantization of a process, 2026-12-06).
    """
    names = quantized_names(tensors)
    with ThreadPoolExecutor(max_workers=_quantizing_threads()) as pool:  # NumPy lets go of the GIL in each block
        quantized = dict(zip(names, pool.map(lambda name: quantize(tensors[name]), names), strict=True))
    floats = {}
    for name, tensor in tensors.items():
        if name not in quantized:
            floats[name] = tensor
        elif not integer_kernels or name == OUTPUT_PROJECTION:
            floats[name] = quantized[name].dequantize()
    return floats, quantized


def _quantizing_threads() -> int:
    """The cores this process may run on (its CPU affinity, which a container or ``taskset`` narrows, not the
    machine's count). Each thread quantizes through :func:`ct2_int8`'s small scratch block, so threads add
    little memory."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
