"""CTranslate2 ``model.bin`` and ``config.json``: read, write, and convert to and from canonical weights.

The real Whisper weights available offline are CTranslate2 files (DESIGN.md §2), so this reader
is how every checkpoint here starts. Layout of ``model.bin`` (little-endian)::

    uint32 binary version (6) | string spec name | uint32 spec revision | uint32 variable count
    per variable: string name | uint8 rank | rank x uint32 dims | uint8 dtype | uint32 byte count | bytes
    uint32 alias count | per alias: string alias | string target

where a string is a uint16 byte length (counting a trailing NUL) and the bytes. The file is read
tensor by tensor straight into NumPy arrays (the base model arrives in two parts, read as one
stream), keeping its dtype: float16 stays float16, so nothing is rounded on the way through.

Quantized files (faster-whisper's ``int8`` models) hold a weight as int8 or int16 values plus a float32
sibling ``<name>_scale`` (per row for int8, one for int16): :func:`dequantize` turns them back into
floats as CTranslate2's CPU kernels do, and :func:`quantize` writes int8 exactly as CTranslate2's
converter does (:func:`weights_bridge.quantization.ct2_int8`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from whisper_core.fileio import atomic_path, read_json, write_json

from . import bfloat16, engine, quantization
from .rules import CT2_OPTIONAL_SCALARS, CT2_SCALARS

MODEL_FILE = "model.bin"
CONFIG_FILE = "config.json"
BINARY_VERSION = 6
WHISPER_SPEC = "WhisperSpec"
WHISPER_SPEC_REVISION = 3

# dtype code -> NumPy dtype; code 5 is bfloat16, which NumPy lacks: read as float32 (see .bfloat16).
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}
DTYPE_CODES: dict[np.dtype, int] = {dtype: code for code, dtype in DTYPES.items()}
_BFLOAT16 = 5


@dataclass
class Ct2Model:
    """The content of a ``model.bin``: variables in file order (weights and rank-0 settings) and aliases."""

    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)
    spec: str = WHISPER_SPEC
    revision: int = WHISPER_SPEC_REVISION
    version: int = BINARY_VERSION


class _Stream:
    """Sequential reads over the concatenation of ``paths``, naming file and offset in errors."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self.label = " + ".join(str(p) for p in self.paths)
        self.sizes = [p.stat().st_size for p in self.paths]
        self.offset = 0
        self._index = 0
        self._file: BinaryIO | None = None

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def readinto(self, buffer: memoryview, what: str) -> None:
        """Fill ``buffer`` (bytes) from the stream or raise naming ``what`` was being read."""
        filled = 0
        while filled < len(buffer):
            if self._file is None:
                if self._index == len(self.paths):
                    raise ValueError(
                        f"{self.label}: truncated CTranslate2 file: {what} needs {len(buffer)} bytes at offset "
                        f"{self.offset - filled}, but the file ends at {self.size}"
                    )
                self._file = open(self.paths[self._index], "rb")  # noqa: SIM115 (closed on exhaustion or exit)
            count = self._file.readinto(buffer[filled:])
            if not count:
                self._file.close()
                self._file = None
                self._index += 1
                continue
            filled += count
            self.offset += count

    def read(self, size: int, what: str) -> bytes:
        buffer = bytearray(size)
        self.readinto(memoryview(buffer), what)
        return bytes(buffer)

    def unpack(self, fmt: str, what: str) -> Any:
        (value,) = struct.unpack("<" + fmt, self.read(struct.calcsize(fmt), what))
        return value

    def string(self, what: str) -> str:
        length = self.unpack("H", f"the length of {what}")
        raw = self.read(length, what)
        if not raw.endswith(b"\0"):
            raise ValueError(
                f"{self.label}: {what} at offset {self.offset - length} is not NUL-terminated: corrupt file"
            )
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"{self.label}: {what} at offset {self.offset - length} is not UTF-8: corrupt file"
            ) from None

    def at_end(self) -> bool:
        return self.offset == self.size


def read_model(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> Ct2Model:
    """Read a ``model.bin`` (or the parts of one, in concatenation order)."""
    part_paths = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    for path in part_paths:
        if not path.is_file():
            raise FileNotFoundError(f"no CTranslate2 model file at {path}")
    with _Stream(part_paths) as stream:
        version = stream.unpack("I", "the binary version")
        if version != BINARY_VERSION:
            raise ValueError(
                f"{stream.label}: not a CTranslate2 model.bin of binary version {BINARY_VERSION} "
                f"(found {version:#x} where the version belongs: wrong file or unsupported version)"
            )
        spec = stream.string("the spec name")
        revision = stream.unpack("I", "the spec revision")
        count = stream.unpack("I", "the variable count")
        variables: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = stream.string("a variable name")
            rank = stream.unpack("B", f"the rank of {name}")
            shape = tuple(stream.unpack("I", f"the shape of {name}") for _ in range(rank))
            code = stream.unpack("B", f"the dtype of {name}")
            if code not in DTYPES and code != _BFLOAT16:
                raise ValueError(f"{stream.label}: variable {name} has unknown dtype code {code}")
            dtype = DTYPES.get(code, np.dtype("<u2"))  # bfloat16 is read as its bit patterns, then widened
            nbytes = stream.unpack("I", f"the byte count of {name}")
            if nbytes != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
                raise ValueError(
                    f"{stream.label}: variable {name} declares {nbytes} bytes, but shape {shape} of {dtype} needs "
                    f"{dtype.itemsize * int(np.prod(shape, dtype=np.int64))}: corrupt file"
                )
            if name in variables:
                raise ValueError(f"{stream.label}: variable {name} appears twice: corrupt file")
            array = np.empty(shape, dtype)
            stream.readinto(memoryview(array.reshape(-1).view(np.uint8)), f"the data of {name}")
            variables[name] = bfloat16.widen(array) if code == _BFLOAT16 else array
        aliases = {}
        for _ in range(stream.unpack("I", "the alias count")):
            alias = stream.string("an alias name")
            aliases[alias] = stream.string(f"the target of alias {alias}")
        if not stream.at_end():
            raise ValueError(f"{stream.label}: {stream.size - stream.offset} unexpected bytes after the aliases")
    return Ct2Model(variables, aliases, spec, revision, version)


def _pack_string(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_model(path: str | os.PathLike, model: Ct2Model) -> Path:
    """Write ``model`` as ``model.bin`` atomically (nothing is left at ``path`` if writing fails)."""
    path = Path(path)
    with atomic_path(path) as temp_path, open(temp_path, "wb") as file:
        file.write(struct.pack("<I", model.version) + _pack_string(model.spec))
        file.write(struct.pack("<II", model.revision, len(model.variables)))
        for name, array in model.variables.items():
            dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
            if dtype not in DTYPE_CODES:
                raise ValueError(
                    f"{path}: variable {name} has dtype {array.dtype}, which CTranslate2 files cannot hold"
                )
            data = np.asarray(array, dtype=dtype, order="C")  # (ascontiguousarray would make scalars 1-d)
            file.write(_pack_string(name) + struct.pack(f"<B{data.ndim}I", data.ndim, *data.shape))
            file.write(struct.pack("<BI", DTYPE_CODES[dtype], data.nbytes))
            file.write(memoryview(data.reshape(-1).view(np.uint8)))
        file.write(struct.pack("<I", len(model.aliases)))
        for alias, target in model.aliases.items():
            file.write(_pack_string(alias) + _pack_string(target))
    return path


# -- quantized variables -----------------------------------------------------------------------
SCALE_SUFFIX = "_scale"
# Layout kinds CTranslate2 quantizes (its Linear, Conv1D and Embeddings specs have a weight scale).
QUANTIZED_KINDS: tuple[str, ...] = ("linear", "conv1d", "embedding")


def dequantize(model: Ct2Model, dtype: str | None = None, *, source: str = MODEL_FILE) -> Ct2Model:
    """``model`` with every int8/int16 weight replaced by its float values and the scales dropped.

    ``dtype`` is the float type wanted; by default that of the file's float weights (float32 in an
    ``int8`` model, float16 in ``int8_float16``), so all tensors come out in one dtype."""
    variables = dict(model.variables)
    scales = {name for name in variables if name.endswith(SCALE_SUFFIX)}
    if not scales:
        return model
    if dtype is None:
        floats = [a.dtype for n, a in variables.items() if n not in scales and a.ndim and a.dtype.kind == "f"]
        dtype = str(floats[0]) if floats else "float32"
    for scale_name in sorted(scales):
        name = scale_name.removesuffix(SCALE_SUFFIX)
        values, factors = variables.get(name), variables.pop(scale_name)
        if values is None or values.dtype not in (np.dtype("i1"), np.dtype("<i2")):
            raise ValueError(
                f"{source}: {scale_name} scales {name}, which is {'missing' if values is None else values.dtype}, "
                "not an int8 or int16 weight: corrupt file"
            )
        expected = () if values.dtype == np.dtype("<i2") else (len(values),)
        if factors.shape != expected or factors.dtype != np.float32 or not np.all(factors > 0):
            raise ValueError(
                f"{source}: {scale_name} must be positive float32 of shape {expected} for {values.dtype} {name}, "
                f"got {factors.dtype} {factors.shape}: corrupt file"
            )
        variables[name] = quantization.dequantize_ct2(values, factors).astype(dtype)
    unscaled = [n for n, a in variables.items() if a.dtype in (np.dtype("i1"), np.dtype("<i2")) and a.ndim > 0]
    if unscaled:
        raise ValueError(f"{source}: integer weights without a {SCALE_SUFFIX}: {', '.join(unscaled[:3])}")
    return Ct2Model(variables, model.aliases, model.spec, model.revision, model.version)


def quantize(variables: Mapping[str, np.ndarray], kinds: Mapping[str, str]) -> engine.LazyTensors:
    """Variables (lazy) with each weight of a quantized kind as int8 plus its ``_scale``, as CTranslate2's
    ``int8`` models hold them; each weight is read and quantized once, with its scale kept until asked for."""
    pending: dict[str, np.ndarray] = {}

    def values(name: str) -> np.ndarray:
        array, pending[name] = quantization.ct2_int8(variables[name])
        return array

    def factors(name: str) -> np.ndarray:
        if name not in pending:
            values(name)
        return pending.pop(name)

    loaders = {}
    for name in variables:
        if kinds.get(name) in QUANTIZED_KINDS:
            loaders[name] = lambda name=name: values(name)
            loaders[name + SCALE_SUFFIX] = lambda name=name: factors(name)
        else:
            loaders[name] = lambda name=name: variables[name]
    return engine.LazyTensors(loaders)


# -- conversion --------------------------------------------------------------------------------
def to_canonical(model: Ct2Model, config: Any, *, source: str = MODEL_FILE) -> dict[str, np.ndarray]:
    """CTranslate2 Whisper variables -> stored canonical tensors, checking the settings and aliases too."""
    if model.spec != WHISPER_SPEC:
        raise ValueError(f"{source}: spec {model.spec!r} is not {WHISPER_SPEC!r}: not a Whisper model")
    weights = dict(model.variables)
    settings = {name: (dtype, value(config)) for name, (dtype, value) in CT2_SCALARS.items()}
    settings.update({name: expected for name, expected in CT2_OPTIONAL_SCALARS.items() if name in weights})
    for name, (dtype, value) in settings.items():
        if name not in weights:
            raise ValueError(f"{source}: setting {name} is missing")
        array = weights.pop(name)
        if array.shape != () or array.dtype != np.dtype(dtype) or int(array) != value:
            raise ValueError(
                f"{source}: setting {name} is {array.dtype} {array.tolist()}, expected {dtype} {value} "
                "(this spec is not one this converter understands)"
            )
    expected_aliases = engine.tied_names(config, "ct2")
    if model.aliases != expected_aliases:
        raise ValueError(f"{source}: aliases {model.aliases} differ from the expected {expected_aliases}")
    return engine.to_canonical(weights, "ct2", config, source=source)


def from_canonical(tensors: Mapping[str, np.ndarray], config: Any, *, source: str = "weights") -> Ct2Model:
    """Stored canonical tensors -> a CTranslate2 Whisper model, variables sorted by name as CT2 writes them."""
    variables = engine.from_canonical(tensors, "ct2", config, source=source)
    for name, (dtype, value) in CT2_SCALARS.items():
        variables[name] = np.array(value(config), dtype=dtype)
    return Ct2Model(dict(sorted(variables.items())), engine.tied_names(config, "ct2"))


# -- config.json -------------------------------------------------------------------------------
CONFIG_KEYS: tuple[str, ...] = ("alignment_heads", "lang_ids", "suppress_ids", "suppress_ids_begin")


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a CTranslate2 Whisper ``config.json`` (a file or the directory holding it), checking its lists."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no CTranslate2 config at {path}")
    config = read_json(path)
    for key in CONFIG_KEYS:
        value = config.get(key)
        if key == "alignment_heads":
            valid = isinstance(value, list) and all(
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, int) for x in pair) for pair in value
            )
        else:
            valid = isinstance(value, list) and all(isinstance(x, int) for x in value)
        if not valid:
            raise ValueError(
                f"{path}: {key} must be a list of {'[layer, head] pairs' if key == 'alignment_heads' else 'ids'}, got {value!r}"
            )
    return config


def config_from_generation(generation_config: Any) -> dict[str, Any]:
    """The CTranslate2 ``config.json`` content for a canonical ``generation_config``."""
    lang_to_id = generation_config.lang_to_id or {}
    return {
        "alignment_heads": [list(pair) for pair in generation_config.alignment_heads or []],
        "lang_ids": sorted(lang_to_id.values()),
        "suppress_ids": list(generation_config.suppress_tokens or []),
        "suppress_ids_begin": list(generation_config.begin_suppress_tokens or []),
    }


def write_config(path: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    """Write a CTranslate2 ``config.json`` atomically (``path`` may be the model directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    write_json(path, dict(config))
    return path
