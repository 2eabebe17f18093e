"""bfloat16 tensors, which NumPy lacks, read as float32 without loss.

A bfloat16 is the upper half of a float32 (same sign and exponent, 7 of its 23 mantissa bits), so
shifting the 16-bit pattern into the top of a 32-bit word gives the very same value. Many fine-tuned
checkpoints are stored in bfloat16; every reader widens them this way, and a backend can cast back
to bfloat16 (``torch_dtype``/``dtype``) exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np


def widen(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (any 2-byte integer array) -> float32 arrays of the same values."""
    return (np.asarray(bits).view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def from_bytes(data: bytes | memoryview, shape: tuple[int, ...]) -> np.ndarray:
    """Little-endian bfloat16 ``data`` of ``shape`` -> float32."""
    return widen(np.frombuffer(data, dtype="<u2").reshape(shape))


def safetensors_tensors(path: str | os.PathLike, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The ``BF16`` tensors ``names`` of a safetensors file, as float32 (safetensors' NumPy API refuses them).

    The file is an 8-byte little-endian header length, a JSON header giving each tensor's dtype, shape
    and byte range after the header, then the data.
    """
    with open(path, "rb") as file:
        header_length = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(header_length))
        tensors = {}
        for name in names:
            entry = header[name]
            if entry["dtype"] != "BF16":
                raise ValueError(f"{path}: tensor {name} is {entry['dtype']}, not BF16")
            start, end = entry["data_offsets"]
            file.seek(8 + header_length + start)
            data = file.read(end - start)
            if len(data) != end - start:
                raise ValueError(f"{path}: tensor {name} is cut short: truncated file")
            tensors[name] = from_bytes(data, tuple(entry["shape"]))
    return tensors
