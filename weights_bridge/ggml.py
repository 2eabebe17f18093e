"""whisper.cpp's model file (``ggml-*.bin``): read, write, and convert to and from canonical weights.

The legacy GGML container whisper.cpp loads (docs/runtime-formats.md §1), little-endian, unpadded::

    uint32 magic "ggml" | int32 x 11 hyperparameters (n_vocab ... n_mels, ftype)
    int32 n_mels | int32 201 | float32 [n_mels, 201] mel filters
    int32 count | count x (uint32 length | token bytes)       the byte-pair vocabulary, ids 0..count-1
    per tensor: int32 n_dims | int32 name length | int32 type | n_dims x int32 dims, innermost first | name | data

Tensors carry openai-whisper's names (the ``ggml`` column of :mod:`weights_bridge.rules`) and PyTorch's
C-order bytes; the output projection is the token embedding. The loader fixes each tensor's storage
type by its kind (:data:`weights_bridge.rules.GGML_STORAGE`): positions, biases and norms float32,
convolutions float16 unless the file is all float32, the rest the file's type: float32, float16 or
q8_0 (blocks of 32 values along a row: a float16 scale, then 32 int8, rounded as ggml rounds them).
Special-token ids are not stored: whisper.cpp places them after the vocabulary from ``n_vocab``, as
openai-whisper lays them out, so only models with OpenAI's vocabulary transcribe.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from whisper_core.config import WhisperConfig
from whisper_core.fileio import atomic_path
from whisper_core.languages import LANGUAGES
from whisper_core.tiktoken_conversion import special_token_ids, token_bytes, tokenizer_from_ranks
from whisper_core.tokenizer import END_OF_TEXT, WhisperTokenizer

from . import engine, openai_pt
from .rules import GGML_STORAGE

FORMAT = "ggml"
MAGIC = 0x67676D6C  # "ggml"
# Hyperparameters in file order (not openai-whisper's ModelDimensions order), then ftype.
HPARAMS: tuple[str, ...] = (
    "n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
    "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels",
)  # fmt: skip
# The file's weight type -> its ftype; ggml's quantize tool adds 1000 x its quantization version (2).
FILE_TYPES: dict[str, int] = {"float32": 0, "float16": 1, "q8_0": 7}
QUANTIZATION_VERSION_FACTOR = 1000
QUANTIZATION_VERSION = 2
# ggml tensor types: code -> name.
TENSOR_TYPES: dict[int, str] = {0: "float32", 1: "float16", 8: "q8_0"}
TYPE_CODES: dict[str, int] = {name: code for code, name in TENSOR_TYPES.items()}
FREQUENCY_BINS = 201  # n_fft 400 / 2 + 1: whisper.cpp computes its log-mel with the file's filters
Q8_BLOCK = 32
Q8_RECORD = np.dtype([("scale", "<f2"), ("values", "i1", (Q8_BLOCK,))])  # 34 bytes, unpadded
Q8_CHUNK = Q8_BLOCK * 32768  # values quantized at a time while writing, to bound the temporaries
MAX_DIMS = 4
FILE_PREFIX = "ggml-"  # whisper.cpp's official files: ggml-<openai model name>.bin


def is_ggml(path: str | os.PathLike) -> bool:
    """Whether the file starts with GGML's magic number."""
    with open(path, "rb") as file:
        head = file.read(4)
    return len(head) == 4 and struct.unpack("<I", head)[0] == MAGIC


@dataclass
class GgmlModel:
    """The content of a whisper.cpp model file; ``tensors`` (by whisper.cpp name) may be lazy.

    Read tensors keep the file's float type; q8_0 ones are dequantized to float32."""

    dims: dict[str, int]
    weights_type: str  # "float32", "float16" or "q8_0"
    mel_filters: np.ndarray  # float32 [n_mels, 201]
    vocabulary: list[bytes]  # token bytes by id, ids 0..len-1 (the byte-pair ranks)
    tensors: Mapping[str, np.ndarray]


# -- q8_0 ----------------------------------------------------------------------------------------------
def quantize_q8_0(array: np.ndarray) -> np.ndarray:
    """ggml's q8_0 blocks of ``array``, bit for bit as ``quantize_row_q8_0_ref`` makes them: per 32 values,
    ``d = max|x| / 127`` and ``round(x / d)`` (half away from zero, multiplying by the float32 ``1 / d``)."""
    blocks = np.ascontiguousarray(array, dtype=np.float32).reshape(-1, Q8_BLOCK)
    scale = np.abs(blocks).max(axis=1) / np.float32(127)
    inverse = np.divide(np.float32(1), scale, out=np.zeros_like(scale), where=scale != 0)
    scaled = blocks * inverse[:, None]
    rounded = np.rint(scaled)  # half to even; ggml's roundf takes halves away from zero:
    truncated = np.trunc(scaled)
    ties = np.abs(scaled - truncated) == 0.5  # exact: a float's fraction is representable
    rounded[ties] = truncated[ties] + np.sign(scaled[ties])
    records = np.empty(len(blocks), Q8_RECORD)
    records["scale"] = scale.astype(np.float16)
    records["values"] = rounded.astype(np.int8)
    return records


def dequantize_q8_0(records: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    values = records["values"].astype(np.float32) * records["scale"].astype(np.float32)[:, None]
    return values.reshape(shape)


def _byte_count(type_name: str, count: int) -> int:
    return count // Q8_BLOCK * Q8_RECORD.itemsize if type_name == "q8_0" else count * np.dtype(type_name).itemsize


# -- reading -------------------------------------------------------------------------------------------
class _Cursor:
    """Reads over a mapped file, naming the file, the offset and what was being read when it ends early."""

    def __init__(self, buffer: Any, label: str) -> None:
        self.buffer, self.label, self.offset = buffer, label, 0

    def take(self, size: int, what: str) -> int:
        """Claim ``size`` bytes for ``what``; returns where they start."""
        if size < 0 or self.offset + size > len(self.buffer):
            raise ValueError(
                f"{self.label}: truncated whisper.cpp file: {what} needs {size} bytes at offset {self.offset}, "
                f"but the file ends at {len(self.buffer)}"
            )
        start, self.offset = self.offset, self.offset + size
        return start

    def ints(self, count: int, what: str, fmt: str = "i") -> tuple[int, ...]:
        start = self.take(4 * count, what)
        return struct.unpack_from(f"<{count}{fmt}", self.buffer, start)

    def array(self, dtype: np.dtype | str, count: int, what: str) -> np.ndarray:
        dtype = np.dtype(dtype)
        start = self.take(dtype.itemsize * count, what)
        return np.frombuffer(self.buffer, dtype, count, start)


def _map(path: Path) -> Any:
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return b""
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)


def _file_type(ftype: int, label: str) -> str:
    base = ftype % QUANTIZATION_VERSION_FACTOR
    for name, code in FILE_TYPES.items():
        if code == base:
            return name
    known = ", ".join(f"{code} ({name})" for name, code in FILE_TYPES.items())
    raise ValueError(f"{label}: ftype {ftype} is not one this reader knows ({known}, plus 1000 x a version)")


def read(path: str | os.PathLike) -> GgmlModel:
    """Read a whisper.cpp model file; tensors are loaded when accessed (the file is memory-mapped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no whisper.cpp model file at {path}")
    buffer = _map(path)
    cursor = _Cursor(buffer, str(path))
    (magic,) = cursor.ints(1, "the magic number", "I")
    if magic != MAGIC:
        raise ValueError(f"{path}: not a whisper.cpp model file (magic {magic:#010x}, expected {MAGIC:#010x} 'ggml')")
    values = cursor.ints(len(HPARAMS) + 1, "the hyperparameters")
    dims = dict(zip(HPARAMS, values[:-1], strict=True))
    weights_type = _file_type(values[-1], str(path))
    bad = [f"{name} {value}" for name, value in dims.items() if value <= 0]
    if bad:
        raise ValueError(f"{path}: hyperparameters must be positive, got {', '.join(bad)}: corrupt file")
    n_mels, bins = cursor.ints(2, "the mel filter shape")
    if (n_mels, bins) != (dims["n_mels"], FREQUENCY_BINS):
        raise ValueError(
            f"{path}: mel filters are [{n_mels}, {bins}], expected [{dims['n_mels']}, {FREQUENCY_BINS}]: corrupt file"
        )
    mel_filters = cursor.array("<f4", n_mels * bins, "the mel filters").reshape(n_mels, bins).copy()
    (count,) = cursor.ints(1, "the vocabulary size")
    if not 0 <= count <= dims["n_vocab"]:
        raise ValueError(f"{path}: {count} vocabulary entries for n_vocab {dims['n_vocab']}: corrupt file")
    vocabulary = []
    for token_id in range(count):
        (length,) = cursor.ints(1, f"the length of token {token_id}", "I")
        start = cursor.take(length, f"token {token_id}")
        vocabulary.append(bytes(buffer[start : start + length]))
    loaders, shapes = {}, {}
    while cursor.offset < len(buffer):
        name, shape, type_name, start = _tensor_record(cursor)
        if name in loaders:
            raise ValueError(f"{path}: tensor {name} appears twice: corrupt file")
        loaders[name] = lambda shape=shape, type_name=type_name, start=start: _load(buffer, shape, type_name, start)
        shapes[name] = shape
    tensors = engine.LazyTensors(loaders, shapes)
    return GgmlModel(dims, weights_type, mel_filters, vocabulary, tensors)


def _tensor_record(cursor: _Cursor) -> tuple[str, tuple[int, ...], str, int]:
    """One tensor's header; returns (name, NumPy shape, type, where its data starts) and skips the data."""
    at = cursor.offset
    n_dims, name_length, code = cursor.ints(3, f"the tensor header at offset {at}")
    if not 1 <= n_dims <= MAX_DIMS or name_length <= 0 or code not in TENSOR_TYPES:
        raise ValueError(
            f"{cursor.label}: bad tensor header at offset {at} ({n_dims} dims, name of {name_length} bytes, "
            f"type {code}; known types {TENSOR_TYPES}): corrupt file"
        )
    dims = cursor.ints(n_dims, f"the dimensions of the tensor at offset {at}")
    start = cursor.take(name_length, f"the name of the tensor at offset {at}")
    try:
        name = bytes(cursor.buffer[start : start + name_length]).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{cursor.label}: the tensor name at offset {start} is not UTF-8: corrupt file") from None
    if min(dims) <= 0:
        raise ValueError(f"{cursor.label}: tensor {name} has dimensions {dims}: corrupt file")
    type_name = TENSOR_TYPES[code]
    count = int(np.prod(dims, dtype=np.int64))
    if type_name == "q8_0" and dims[0] % Q8_BLOCK:
        raise ValueError(f"{cursor.label}: q8_0 tensor {name} has rows of {dims[0]}, not a multiple of {Q8_BLOCK}")
    data = cursor.take(_byte_count(type_name, count), f"the data of {name}")
    return name, tuple(reversed(dims)), type_name, data


def _load(buffer: Any, shape: tuple[int, ...], type_name: str, start: int) -> np.ndarray:
    count = int(np.prod(shape, dtype=np.int64))
    if type_name == "q8_0":
        return dequantize_q8_0(np.frombuffer(buffer, Q8_RECORD, count // Q8_BLOCK, start), shape)
    return np.frombuffer(buffer, np.dtype(type_name).newbyteorder("<"), count, start).reshape(shape).copy()


# -- writing -------------------------------------------------------------------------------------------
def write(path: str | os.PathLike, model: GgmlModel, kinds: Mapping[str, str]) -> Path:
    """Write ``model`` atomically; ``kinds`` (whisper.cpp name -> layout kind) fixes each storage type."""
    path = Path(path)
    if model.weights_type not in FILE_TYPES:
        raise ValueError(f"whisper.cpp files hold float32, float16 or q8_0 weights, not {model.weights_type!r}")
    ftype = FILE_TYPES[model.weights_type]
    if model.weights_type == "q8_0":
        ftype += QUANTIZATION_VERSION * QUANTIZATION_VERSION_FACTOR
    with atomic_path(path) as temp_path, open(temp_path, "wb") as file:
        file.write(struct.pack(f"<I{len(HPARAMS) + 1}i", MAGIC, *(model.dims[n] for n in HPARAMS), ftype))
        filters = np.ascontiguousarray(model.mel_filters, dtype="<f4")
        file.write(struct.pack("<2i", *filters.shape) + filters.tobytes())
        file.write(struct.pack("<i", len(model.vocabulary)))
        for token in model.vocabulary:
            file.write(struct.pack("<I", len(token)) + token)
        for name, array in model.tensors.items():
            _write_tensor(file, name, array, kinds[name], model.weights_type, path)
    return path


def storage_type(kind: str, weights_type: str) -> str:
    """The type whisper.cpp's loader expects for a tensor of layout ``kind`` in a file of ``weights_type``."""
    storage = GGML_STORAGE[kind]
    if storage == "weights":
        return weights_type
    if storage == "half":
        return "float32" if weights_type == "float32" else "float16"
    return storage


def _write_tensor(file: Any, name: str, array: np.ndarray, kind: str, weights_type: str, path: Path) -> None:
    type_name = storage_type(kind, weights_type)
    shape = (*array.shape, 1) if kind == "conv_bias" else array.shape  # whisper.cpp's conv bias is [out, 1]
    if type_name == "q8_0" and shape[-1] % Q8_BLOCK:
        raise ValueError(
            f"{path}: {name} has rows of {shape[-1]} values; q8_0 needs a multiple of {Q8_BLOCK}: "
            "write this model as float16 or float32"
        )
    encoded = name.encode("utf-8")
    file.write(struct.pack(f"<3i{len(shape)}i", len(shape), len(encoded), TYPE_CODES[type_name], *reversed(shape)))
    file.write(encoded)
    if type_name == "q8_0":
        flat = array.reshape(-1)
        for start in range(0, flat.size, Q8_CHUNK):
            file.write(quantize_q8_0(flat[start : start + Q8_CHUNK]).tobytes())
    else:
        data = np.ascontiguousarray(array, dtype=np.dtype(type_name).newbyteorder("<"))
        file.write(memoryview(data.reshape(-1).view(np.uint8)))


# -- vocabulary ----------------------------------------------------------------------------------------
def vocabulary_of(tokenizer: WhisperTokenizer) -> list[bytes]:
    """The byte-pair tokens before ``<|endoftext|>`` as raw bytes, as whisper.cpp stores its vocabulary
    (an id the tokenizer lacks, multilingual's unused 50256, is the empty token, as in OpenAI's files)."""
    spellings = tokenizer.convert_ids_to_tokens(list(range(tokenizer.eos_token_id)))
    return [b"" if spelling is None else token_bytes(spelling) for spelling in spellings]


def vocabulary_tokenizer(model: GgmlModel, config: WhisperConfig, *, source: str) -> WhisperTokenizer | None:
    """The Whisper tokenizer a file's vocabulary and OpenAI's special-token layout make (whisper.cpp
    places the special tokens the same way), or None for a vocabulary that is not OpenAI's layout."""
    try:
        table = special_token_ids(config.vocab_size)
    except ValueError:
        return None
    if len(model.vocabulary) != table[END_OF_TEXT]:
        return None
    ranks = {token: rank for rank, token in enumerate(model.vocabulary)}
    if len(ranks) != len(model.vocabulary):
        raise ValueError(f"{source}: the vocabulary repeats a token: corrupt file")
    languages = sum(token[2:-2] in LANGUAGES for token in table)
    return WhisperTokenizer(tokenizer_from_ranks(ranks, source, num_languages=languages, with_timestamps=False))


# -- conversion ----------------------------------------------------------------------------------------
def to_canonical(model: GgmlModel, *, source: str) -> tuple[WhisperConfig, engine.LazyTensors]:
    """The config and canonical tensors of a read file, all in one dtype: float16 for a float16 file
    (its float32 biases and norms narrowed), float32 otherwise (q8_0 dequantized)."""
    config = openai_pt.config_from_dims(model.dims, source=source)
    dtype = "float16" if model.weights_type == "float16" else "float32"
    config = WhisperConfig.from_dict({**config.to_dict(), "torch_dtype": dtype})
    kinds = engine.foreign_kinds(config, FORMAT)
    tensors = engine.LazyTensors(
        {name: (lambda name=name: _unstored_shape(model.tensors, name, kinds).astype(dtype)) for name in model.tensors},
        {name: _stored_shape(model.tensors, name, kinds) for name in model.tensors},
    )
    return config, engine.canonical_view(tensors, FORMAT, config, source=source)


def _stored_shape(tensors: Mapping[str, np.ndarray], name: str, kinds: Mapping[str, str]) -> tuple[int, ...]:
    shape = engine.shape_of(tensors, name)
    return shape[:-1] if kinds.get(name) == "conv_bias" and shape[-1:] == (1,) else shape


def _unstored_shape(tensors: Mapping[str, np.ndarray], name: str, kinds: Mapping[str, str]) -> np.ndarray:
    """The tensor in the table's shape: a conv bias loses whisper.cpp's trailing axis."""
    array = tensors[name]
    return array.reshape(array.shape[:-1]) if kinds.get(name) == "conv_bias" and array.shape[-1:] == (1,) else array


def from_canonical(
    tensors: Mapping[str, np.ndarray],
    config: WhisperConfig,
    *,
    weights_type: str,
    mel_filters: np.ndarray,
    vocabulary: Sequence[bytes],
    source: str = "weights",
) -> tuple[GgmlModel, dict[str, str]]:
    """A whisper.cpp model of canonical tensors (lazy), and each tensor's kind for :func:`write`."""
    dims = openai_pt.dims_from_config(config)
    filters = np.asarray(mel_filters, np.float32)
    if filters.shape != (dims["n_mels"], FREQUENCY_BINS):
        raise ValueError(f"mel filters must be [{dims['n_mels']}, {FREQUENCY_BINS}], got {filters.shape}")
    view = engine.foreign_view(tensors, FORMAT, config, source=source)
    return GgmlModel(dims, weights_type, filters, list(vocabulary), view), engine.foreign_kinds(config, FORMAT)
