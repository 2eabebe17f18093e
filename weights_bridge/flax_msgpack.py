"""HF Flax ``flax_model.msgpack``: read into, and write from, canonical weights, one tensor at a time.

The file is ``flax.serialization.msgpack_serialize`` of the parameter tree: nested msgpack maps
keyed by module names (``{"model": {"encoder": {"layers": {"0": {"self_attn": {"q_proj":
{"kernel": ...}}}}}}}``), each leaf a msgpack ext value of type 1 whose payload is itself msgpack::

    ext(type=1, payload = [shape (array of ints), dtype name (str, NumPy's), raw C-order bytes (bin)])

Rather than unpacking the whole tree (which holds every tensor in memory at once, plus a copy), the
reader walks the map headers and records where each leaf's bytes lie, then reads a tensor straight
into its array when asked; the writer emits headers and streams each array's bytes. Arrays over
1 GiB, which flax splits into ``__msgpack_chunked_array__`` maps, do not occur in Whisper and are
refused by name. Names and layouts come from the ``hf_flax`` column of :mod:`weights_bridge.rules`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import numpy as np

from whisper_core.fileio import atomic_path

from . import bfloat16, engine

FLAX_WEIGHTS_NAME = "flax_model.msgpack"
FORMAT = "hf_flax"
NDARRAY_EXT = 1  # flax.serialization._MsgpackExtType.ndarray
CHUNKED_KEY = "__msgpack_chunked_array__"
# How a bfloat16 leaf is read (its 2-byte patterns, told apart from real uint16 leaves), then widened.
BFLOAT16_BITS = np.dtype([("bfloat16", "<u2")])

# msgpack markers (https://github.com/msgpack/msgpack/blob/master/spec.md) used by flax's files.
# Fixed-size ext markers by payload length, and variable ones by the struct format of their length.
FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
EXT = {0xC7: ">B", 0xC8: ">H", 0xC9: ">I"}
MAP = {0xDE: ">H", 0xDF: ">I"}  # plus fixmap 0x80-0x8f
STR = {0xD9: ">B", 0xDA: ">H", 0xDB: ">I"}  # plus fixstr 0xa0-0xbf
ARRAY = {0xDC: ">H", 0xDD: ">I"}  # plus fixarray 0x90-0x9f
BIN = {0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}
UINT = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q"}  # plus positive fixint 0x00-0x7f


class _Cursor:
    """Reads msgpack headers from a file, naming the file, offset and what was expected in errors."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        self.file, self.path = file, path

    def fail(self, message: str) -> ValueError:
        return ValueError(f"{self.path}: {message} at offset {self.file.tell()}: not a flax msgpack file, or corrupt")

    def read(self, size: int, what: str) -> bytes:
        data = self.file.read(size)
        if len(data) != size:
            raise ValueError(f"{self.path}: truncated file: {what} needs {size} bytes at offset {self.file.tell()}")
        return data

    def number(self, fmt: str, what: str) -> int:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt), what))[0]

    def marker(self, what: str) -> int:
        return self.read(1, what)[0]

    def sized(self, marker: int, fixed: tuple[int, int] | None, table: dict[int, str], what: str) -> int | None:
        """The length of a map/str/array/bin whose ``marker`` is fix-sized (``fixed`` = base, mask) or in ``table``."""
        if fixed is not None and fixed[0] <= marker <= fixed[0] + fixed[1]:
            return marker - fixed[0]
        if marker in table:
            return self.number(table[marker], f"the length of {what}")
        return None

    def string(self, what: str) -> str:
        length = self.sized(self.marker(what), (0xA0, 0x1F), STR, what)
        if length is None:
            raise self.fail(f"expected a string for {what}")
        return self.read(length, what).decode("utf-8")

    def uint(self, what: str) -> int:
        marker = self.marker(what)
        if marker <= 0x7F:
            return marker
        if marker not in UINT:
            raise self.fail(f"expected a non-negative integer for {what}")
        return self.number(UINT[marker], what)


def _ext_length(cursor: _Cursor, marker: int, name: str) -> int | None:
    """The payload length of the ext value starting with ``marker`` (None: not an ext), after its type byte."""
    fixed = {marker_: length for length, marker_ in FIXEXT.items()}
    if marker in fixed:
        length = fixed[marker]
    elif marker in EXT:
        length = cursor.number(EXT[marker], f"the length of {name}")
    else:
        return None
    ext_type = struct.unpack(">b", cursor.read(1, f"the ext type of {name}"))[0]
    if ext_type != NDARRAY_EXT:
        raise cursor.fail(f"tensor {name} has msgpack ext type {ext_type}, not {NDARRAY_EXT} (an ndarray)")
    return length


def _index(cursor: _Cursor, prefix: str, leaves: dict[str, tuple[int, int]]) -> None:
    """Record (payload offset, payload length) of every leaf of the map at the cursor, skipping the data."""
    what = f"the map {prefix or '/'}"
    count = cursor.sized(cursor.marker(what), (0x80, 0x0F), MAP, what)
    if count is None:
        raise cursor.fail(f"expected a map for {what}")
    for _ in range(count):
        key = cursor.string(f"a key in {what}")
        if key == CHUNKED_KEY:
            raise ValueError(f"{cursor.path}: tensor {prefix} is chunked (over 1 GiB), which Whisper never needs")
        name = f"{prefix}/{key}" if prefix else key
        start = cursor.file.tell()
        marker = cursor.marker(name)
        length = _ext_length(cursor, marker, name)
        if length is None:
            cursor.file.seek(start)
            _index(cursor, name, leaves)
            continue
        if name in leaves:
            raise cursor.fail(f"tensor {name} appears twice")
        leaves[name] = (cursor.file.tell(), length)
        cursor.file.seek(length, os.SEEK_CUR)


def _leaf_header(cursor: _Cursor, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Parse ``[shape, dtype name, bin header]`` of a leaf payload: its shape, dtype and data length."""
    if cursor.sized(cursor.marker(name), (0x90, 0x0F), ARRAY, name) != 3:
        raise cursor.fail(f"tensor {name} is not a [shape, dtype, bytes] ndarray payload")
    rank = cursor.sized(cursor.marker(f"the shape of {name}"), (0x90, 0x0F), ARRAY, name)
    if rank is None:
        raise cursor.fail(f"expected the shape array of {name}")
    shape = tuple(cursor.uint(f"the shape of {name}") for _ in range(rank))
    dtype_name = cursor.string(f"the dtype of {name}")
    try:
        dtype = BFLOAT16_BITS if dtype_name == "bfloat16" else np.dtype(dtype_name)
    except TypeError:
        raise cursor.fail(f"tensor {name} has unknown dtype {dtype_name!r}") from None
    nbytes = cursor.sized(cursor.marker(f"the data of {name}"), None, BIN, name)
    if nbytes is None:
        raise cursor.fail(f"expected the bytes of {name}")
    expected = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if nbytes != expected:
        raise cursor.fail(f"tensor {name} holds {nbytes} bytes, but shape {shape} of {dtype} needs {expected}")
    return shape, dtype, nbytes


def read_weights(path: str | os.PathLike) -> engine.LazyTensors:
    """The parameters of a ``flax_model.msgpack`` under ``/``-joined paths, loaded lazily (shapes from headers)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Flax weights file at {path}")
    leaves: dict[str, tuple[int, int]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    with open(path, "rb") as file:
        cursor = _Cursor(file, path)
        _index(cursor, "", leaves)
        if file.read(1):
            raise cursor.fail("unexpected bytes after the parameter tree")
        for name, (offset, _) in leaves.items():
            file.seek(offset)
            shapes[name] = _leaf_header(cursor, name)[0]

    def load(name: str) -> np.ndarray:
        offset, length = leaves[name]
        with open(path, "rb") as file:
            cursor = _Cursor(file, path)
            file.seek(offset)
            shape, dtype, nbytes = _leaf_header(cursor, name)
            if file.tell() + nbytes != offset + length:
                raise cursor.fail(f"tensor {name}'s payload length disagrees with its data")
            array = np.empty(shape, dtype)
            if file.readinto(memoryview(array.reshape(-1).view(np.uint8))) != nbytes:
                raise ValueError(f"{path}: truncated file: the data of tensor {name} ends early")
            return bfloat16.widen(array.view("<u2")) if dtype == BFLOAT16_BITS else array

    return engine.LazyTensors({name: (lambda name=name: load(name)) for name in leaves}, shapes)


def to_canonical(path: str | os.PathLike, config: Any) -> engine.LazyTensors:
    """A lazy canonical view of a ``flax_model.msgpack`` (names checked now, each shape when loaded)."""
    return engine.canonical_view(read_weights(path), FORMAT, config, source=str(path))


def _tree(names: list[str]) -> dict[str, Any]:
    """Nested dicts of path components; leaves hold the full name. Keys keep first-appearance order."""
    tree: dict[str, Any] = {}
    for name in names:
        *parents, leaf = name.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = name
    return tree


def _ext_header(length: int) -> bytes:
    """msgpack's ext header for a payload of ``length`` bytes, as ``msgpack.packb(ExtType(1, ...))`` writes it."""
    if length in FIXEXT:
        return struct.pack(">Bb", FIXEXT[length], NDARRAY_EXT)
    for marker, fmt in EXT.items():
        if length < 256 ** struct.calcsize(fmt):
            return struct.pack(f">B{fmt[1:]}b", marker, length, NDARRAY_EXT)
    raise ValueError(f"a tensor of {length} bytes exceeds msgpack's 4 GiB ext limit")


def _bin_header(length: int) -> bytes:
    for marker, fmt in BIN.items():
        if length < 256 ** struct.calcsize(fmt):
            return struct.pack(f">B{fmt[1:]}", marker, length)
    raise ValueError(f"a tensor of {length} bytes exceeds msgpack's 4 GiB bin limit")


def _write_tree(file: BinaryIO, node: dict[str, Any], tensors: Mapping[str, np.ndarray], path: Path) -> None:
    file.write(_map_header(len(node)))
    for key, child in node.items():
        file.write(msgpack.packb(key, use_bin_type=True))
        if isinstance(child, dict):
            _write_tree(file, child, tensors, path)
            continue
        array = np.ascontiguousarray(tensors[child])
        if array.dtype.hasobject or array.dtype.kind not in "fiub":
            raise ValueError(f"{path}: tensor {child} has dtype {array.dtype}, which flax files cannot hold")
        shape_and_dtype = msgpack.packb(list(array.shape)) + msgpack.packb(array.dtype.name)
        payload_head = b"\x93" + shape_and_dtype + _bin_header(array.nbytes)  # fixarray [shape, dtype, bytes]
        file.write(_ext_header(len(payload_head) + array.nbytes) + payload_head)
        file.write(memoryview(array.reshape(-1).view(np.uint8)))


def _map_header(count: int) -> bytes:
    if count <= 0x0F:
        return bytes([0x80 + count])
    for marker, fmt in MAP.items():
        if count < 256 ** struct.calcsize(fmt):
            return struct.pack(f">B{fmt[1:]}", marker, count)
    raise ValueError(f"a map of {count} entries exceeds msgpack's limit")


def write_weights(path: str | os.PathLike, tensors: Mapping[str, np.ndarray]) -> Path:
    """Write ``/``-named tensors as a flax msgpack parameter tree, tensor by tensor and atomically."""
    path = Path(path)
    with atomic_path(path) as temp_path, open(temp_path, "wb") as file:
        _write_tree(file, _tree(list(tensors)), tensors, path)
    return path


def from_canonical(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], config: Any) -> Path:
    """Write stored canonical tensors (lazy or not) as ``flax_model.msgpack``; checked against ``config`` first."""
    return write_weights(path, engine.foreign_view(tensors, FORMAT, config, source="the weights to save"))
