"""CTranslate2 model.bin: real files, byte-exact round trips, and clear errors on broken files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from weights_bridge import ctranslate2, data_packages
from weights_bridge.fetching import config_from_ctranslate2
from weights_bridge.rules import CT2_SCALARS
from whisper_core import WhisperTokenizer

from .helpers import assert_bit_identical, random_weights, small_config


@pytest.fixture
def small_model_bin(tmp_path):
    config = small_config()
    weights = random_weights(config)
    path = ctranslate2.write_model(tmp_path / "model.bin", ctranslate2.from_canonical(weights, config))
    return path, config, weights


def test_small_model_round_trips_byte_for_byte(small_model_bin, tmp_path):
    path, config, weights = small_model_bin
    model = ctranslate2.read_model(path)
    assert list(model.variables) == sorted(model.variables)  # CT2 writes variables sorted by name
    assert model.variables["decoder/num_heads"].shape == ()
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert_bit_identical(ctranslate2.to_canonical(model, config), weights)
    copy = ctranslate2.write_model(tmp_path / "copy.bin", model)
    assert copy.read_bytes() == path.read_bytes()


def test_parts_are_read_as_one_stream(small_model_bin, tmp_path):
    path, config, weights = small_model_bin
    data = path.read_bytes()
    cut = len(data) // 2 + 3  # inside some tensor's bytes
    (tmp_path / "a").write_bytes(data[:cut])
    (tmp_path / "b").write_bytes(data[cut:])
    model = ctranslate2.read_model([tmp_path / "a", tmp_path / "b"])
    assert_bit_identical(ctranslate2.to_canonical(model, config), weights)


def test_wrong_version_is_named(small_model_bin, tmp_path):
    path, _, _ = small_model_bin
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"PK\x03\x04" + path.read_bytes()[4:])
    with pytest.raises(ValueError, match=rf"{bad}: not a CTranslate2 model\.bin of binary version 6"):
        ctranslate2.read_model(bad)


@pytest.mark.parametrize("keep", [3, 40, 0.6])
def test_truncated_file_is_named(small_model_bin, tmp_path, keep):
    path, _, _ = small_model_bin
    data = path.read_bytes()
    short = tmp_path / "short.bin"
    short.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(ValueError, match=rf"{short}: truncated CTranslate2 file: .* but the file ends at"):
        ctranslate2.read_model(short)


def test_trailing_bytes_are_refused(small_model_bin, tmp_path):
    path, _, _ = small_model_bin
    long = tmp_path / "long.bin"
    long.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(ValueError, match="2 unexpected bytes after the aliases"):
        ctranslate2.read_model(long)


def one_variable_file(tmp_path, code: int, payload: bytes):
    name = b"encoder/conv1/bias\0"
    data = struct.pack("<IH", 6, 12) + b"WhisperSpec\0" + struct.pack("<II", 3, 1)
    data += struct.pack("<H", len(name)) + name + struct.pack("<BIBI", 1, 2, code, len(payload)) + payload
    path = tmp_path / "dtype.bin"
    path.write_bytes(data + struct.pack("<I", 0))
    return path


def test_unknown_dtype_is_named(tmp_path):
    path = one_variable_file(tmp_path, 9, b"\0" * 4)
    with pytest.raises(ValueError, match=rf"{path}: variable encoder/conv1/bias .*unknown dtype code 9"):
        ctranslate2.read_model(path)


def test_bfloat16_is_read_as_float32_exactly(tmp_path):
    values = np.array([1.5, -0.0078125], np.float32)  # both exact in bfloat16: the top 16 bits of each
    path = one_variable_file(tmp_path, 5, (values.view(np.uint32) >> 16).astype("<u2").tobytes())
    variable = ctranslate2.read_model(path).variables["encoder/conv1/bias"]
    assert variable.dtype == np.float32 and variable.tobytes() == values.tobytes()


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.bin")):
        ctranslate2.read_model(tmp_path / "nope.bin")


def test_unexpected_setting_is_refused(small_model_bin):
    path, config, _ = small_model_bin
    model = ctranslate2.read_model(path)
    model.variables["decoder/activation"] = np.array(1, "int8")  # ReLU
    with pytest.raises(ValueError, match=r"model\.bin: setting decoder/activation is int8 1, expected int8 3"):
        ctranslate2.to_canonical(model, config)


def test_failed_write_leaves_nothing(tmp_path):
    model = ctranslate2.Ct2Model({"a": np.zeros(2, "float32"), "b": np.zeros(2, "float64")})
    with pytest.raises(ValueError, match=r"variable b has dtype float64"):
        ctranslate2.write_model(tmp_path / "model.bin", model)
    assert list(tmp_path.iterdir()) == []


def test_config_round_trip_and_errors(tmp_path):
    config = {"alignment_heads": [[1, 0]], "lang_ids": [], "suppress_ids": [1, 2], "suppress_ids_begin": [220]}
    ctranslate2.write_config(tmp_path, config)
    assert ctranslate2.read_config(tmp_path) == config
    (tmp_path / "config.json").write_text('{"alignment_heads": [[1]], "lang_ids": []}')
    with pytest.raises(ValueError, match=r"config\.json: alignment_heads must be a list of \[layer, head\] pairs"):
        ctranslate2.read_config(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "count", "d_model", "layers", "heads", "vocab"),
    [("tiny.en", 148, 384, 4, 6, 51864), ("base", 212, 512, 6, 8, 51865)],
)
def test_real_files(tmp_path, name, count, d_model, layers, heads, vocab):
    """The real data packages: names, shapes, float16, and CT2 -> canonical -> CT2 byte for byte."""
    parts = data_packages.weight_parts(name)
    model = ctranslate2.read_model(parts)
    assert (model.spec, model.revision, len(model.variables)) == ("WhisperSpec", 3, count)
    assert set(CT2_SCALARS) <= set(model.variables)
    assert int(model.variables["encoder/num_heads"]) == heads
    assert model.variables["decoder/embeddings/weight"].shape == (vocab, d_model)
    assert model.variables["encoder/conv1/weight"].shape == (d_model, 80, 3)
    assert model.variables[f"decoder/layer_{layers - 1}/self_attention/linear_0/weight"].shape == (3 * d_model, d_model)
    assert {a.dtype for n, a in model.variables.items() if n not in CT2_SCALARS} == {np.dtype("float16")}
    tokenizer_dir = data_packages.metadata_dir(name)
    config = config_from_ctranslate2(
        model, ctranslate2.read_config(tokenizer_dir), WhisperTokenizer.from_pretrained(tokenizer_dir)
    )
    back = ctranslate2.from_canonical(ctranslate2.to_canonical(model, config), config)
    original = b"".join(part.read_bytes() for part in parts)
    assert ctranslate2.write_model(tmp_path / "model.bin", back).read_bytes() == original


def test_an_activation_ctranslate2_cannot_run_is_refused():
    config = small_config()
    weights = random_weights(config)
    config.activation_function = "relu"  # CT2's Whisper would silently run GELU instead
    with pytest.raises(ValueError, match="GELU only; this model uses 'relu'"):
        ctranslate2.from_canonical(weights, config)
