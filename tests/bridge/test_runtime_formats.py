"""whisper.cpp GGML files, mlx-whisper directories and CTranslate2 int8 variables, on small random configs:
round trips, the containers' own layout facts, q8_0 and int8 arithmetic, and broken files."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors import safe_open

from weights_bridge import ctranslate2, engine, ggml, mlx
from weights_bridge.rules import FORMATS

from .helpers import ENCODER_POSITIONS, assert_bit_identical, random_weights, small_config

FILTERS_BINS = ggml.FREQUENCY_BINS


def _openai_config(d_model: int = 8):
    """openai-whisper's shape rules (feed-forward 4·d), which whisper.cpp and mlx-whisper share."""
    config = small_config()
    config.d_model = d_model
    config.encoder_ffn_dim = config.decoder_ffn_dim = 4 * d_model
    return config


def _write_ggml(path, weights, config, weights_type):
    vocabulary = [bytes([i]) for i in range(40)]
    filters = np.random.default_rng(3).random((config.num_mel_bins, FILTERS_BINS)).astype(np.float32)
    model, kinds = ggml.from_canonical(
        weights, config, weights_type=weights_type, mel_filters=filters, vocabulary=vocabulary
    )
    return ggml.write(path, model, kinds), filters, vocabulary


def _records(path):
    """(name, n_dims, type, dims as stored) of every tensor record, parsed independently of the reader."""
    data = path.read_bytes()
    offset = 4 + 11 * 4  # magic, 10 hyperparameters, ftype
    n_mels, bins = struct.unpack_from("<2i", data, offset)
    offset += 8 + 4 * n_mels * bins
    (count,) = struct.unpack_from("<i", data, offset)
    offset += 4
    for _ in range(count):
        offset += 4 + struct.unpack_from("<I", data, offset)[0]
    records = {}
    while offset < len(data):
        n_dims, length, code = struct.unpack_from("<3i", data, offset)
        dims = struct.unpack_from(f"<{n_dims}i", data, offset + 12)
        offset += 12 + 4 * n_dims
        name = data[offset : offset + length].decode()
        offset += length
        elements = int(np.prod(dims))
        offset += elements // 32 * 34 if code == 8 else elements * (4 if code == 0 else 2)
        records[name] = (code, dims)
    return records


def test_every_format_has_a_column():
    assert {"ggml", "mlx"} <= set(FORMATS)


@pytest.mark.parametrize("weights_type", ["float32", "float16"])
def test_ggml_round_trip_and_layout(tmp_path, weights_type):
    config = _openai_config()
    weights = random_weights(config, weights_type)
    path, filters, vocabulary = _write_ggml(tmp_path / "ggml-test.bin", weights, config, weights_type)
    model = ggml.read(path)
    assert model.weights_type == weights_type and model.vocabulary == vocabulary
    np.testing.assert_array_equal(model.mel_filters, filters)
    read_config, tensors = ggml.to_canonical(model, source=str(path))
    assert_bit_identical(dict(tensors), weights)
    assert read_config.d_model == 8 and read_config.vocab_size == 64
    records = _records(path)
    assert records["encoder.conv1.weight"] == (TYPE := {"float32": 0, "float16": 1}[weights_type], (3, 4, 8))
    assert records["encoder.conv1.bias"] == (0, (1, 8))  # a column, float32 whatever the file's type
    assert records["decoder.blocks.1.mlp.0.weight"] == (TYPE, (8, 32))  # dims innermost first
    assert records["decoder.blocks.1.mlp_ln.bias"] == (0, (8,))
    assert records["encoder.positional_embedding"] == (0, (8, 6))
    assert "encoder.blocks.0.attn.key.bias" not in records and len(records) == 11 + 15 * 2 + 24 * 2


def test_q8_0_rounds_as_ggml_does():
    block = np.zeros(32, np.float32)
    block[:4] = [127.0, 2.5, -2.5, 0.5]  # scale 1: halves round away from zero (C roundf), not to even
    records = ggml.quantize_q8_0(block)
    assert records["scale"][0] == np.float16(1.0)
    np.testing.assert_array_equal(records["values"][0, :4], [127, 3, -3, 1])
    zero = ggml.quantize_q8_0(np.zeros(64, np.float32))
    assert np.all(zero["scale"] == 0) and np.all(zero["values"] == 0)
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((4, 64)).astype(np.float32)
    quantized = ggml.quantize_q8_0(weights)
    error = np.abs(ggml.dequantize_q8_0(quantized, (4, 64)) - weights).reshape(-1, 32)
    step = quantized["scale"].astype(np.float32)[:, None]
    assert np.all(error <= step / 2 + np.abs(weights).reshape(-1, 32).max(axis=1, keepdims=True) * 1e-3)


def test_q8_0_is_ggmls_own_to_the_bit():
    """gguf-py (ggml's Python package) quantizes q8_0 bit for bit as ggml-quants.c does."""
    quants = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType

    rng = np.random.default_rng(2)
    weights = rng.standard_normal((64, 96)).astype(np.float32) * rng.uniform(1e-4, 30, size=(64, 1)).astype(np.float32)
    weights[3] = 0.0
    weights[5, :32] = np.arange(32) * 127 / 31  # exact halves after scaling
    ours = ggml.quantize_q8_0(weights)
    theirs = quants.quantize(weights, GGMLQuantizationType.Q8_0)
    assert ours.tobytes() == np.ascontiguousarray(theirs).tobytes()


def test_ggml_q8_0_file_reads_back_dequantized(tmp_path):
    config = _openai_config(32)
    weights = random_weights(config, "float32")
    path, _, _ = _write_ggml(tmp_path / "q8.bin", weights, config, "q8_0")
    records = _records(path)
    assert records["decoder.blocks.0.attn.query.weight"][0] == 8
    assert records["decoder.token_embedding.weight"][0] == 8
    assert records["encoder.conv2.weight"][0] == 1  # convolutions stay float16 in a q8_0 file
    _, tensors = ggml.to_canonical(ggml.read(path), source=str(path))
    for name, array in tensors.items():
        assert array.dtype == np.float32
        # q8_0: half a step of max|x| / 127, plus the float16 rounding of the step; float16 and float32 closer
        np.testing.assert_allclose(array, weights[name], atol=np.abs(weights[name]).max() / 127 * 0.6, err_msg=name)
        if name.endswith("bias") or "layer_norm" in name or "positions" in name:
            assert array.tobytes() == weights[name].tobytes(), name


def test_q8_0_needs_rows_of_32_and_leaves_nothing(tmp_path):
    config = _openai_config(8)
    with pytest.raises(ValueError, match=r"rows of 8 values; q8_0 needs a multiple of 32"):
        _write_ggml(tmp_path / "q8.bin", random_weights(config, "float32"), config, "q8_0")
    assert list(tmp_path.iterdir()) == []


def test_broken_ggml_files_are_named_and_explained(tmp_path):
    config = _openai_config()
    path, _, _ = _write_ggml(tmp_path / "good.bin", random_weights(config, "float16"), config, "float16")
    data = path.read_bytes()
    cases = {
        "magic.bin": (b"lmgx" + data[4:], r"magic\.bin: not a whisper\.cpp model file"),
        "empty.bin": (b"", r"empty\.bin: truncated whisper\.cpp file: the magic number"),
        "header.bin": (data[:30], r"header\.bin: truncated whisper\.cpp file: the hyperparameters"),
        "tensor.bin": (data[:-3], r"tensor\.bin: truncated whisper\.cpp file: the data of decoder\.ln\.bias"),
        "ftype.bin": (
            data[:44] + struct.pack("<i", 5) + data[48:],
            r"ftype\.bin: ftype 5 is not one this reader knows",
        ),
        "filters.bin": (data[:48] + struct.pack("<i", 7) + data[52:], r"filters\.bin: mel filters are \[7, 201\]"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=message):
            ggml.read(tmp_path / name)
    extra = data + struct.pack("<3i", 1, 3, 0) + struct.pack("<i", 2) + b"abc" + b"\0" * 8
    (tmp_path / "extra.bin").write_bytes(extra)
    model = ggml.read(tmp_path / "extra.bin")
    with pytest.raises(
        ValueError, match=r"extra\.bin: the ggml weights does not match the config; unexpected 1 tensor\(s\): abc"
    ):
        ggml.to_canonical(model, source=str(tmp_path / "extra.bin"))


def test_mlx_round_trip_layout_and_alignment_heads(tmp_path):
    config = _openai_config()
    weights = random_weights(config, "float16")
    mlx.write(tmp_path, weights, config, [[1, 0], [1, 1]])
    values = json.loads((tmp_path / "config.json").read_text())
    assert values == {"n_mels": 4, "n_vocab": 64, "n_audio_ctx": 6, "n_audio_state": 8, "n_audio_head": 2,
                      "n_audio_layer": 2, "n_text_ctx": 5, "n_text_state": 8, "n_text_head": 2, "n_text_layer": 2,
                      "model_type": "whisper"}  # fmt: skip
    with safe_open(str(tmp_path / "weights.safetensors"), framework="np") as file:
        names = set(file.keys())
        assert file.get_tensor("encoder.conv1.weight").shape == (8, 3, 4)  # [out, k, in]
        assert file.get_tensor("alignment_heads").dtype == np.int64
        assert file.metadata() == {"format": "mlx"}
    assert "encoder.positional_embedding" not in names and "decoder.positional_embedding" in names
    assert "decoder.blocks.0.mlp1.weight" in names and "decoder.blocks.0.mlp.0.weight" not in names
    read_config, tensors, heads = mlx.read(tmp_path)
    assert heads == [[1, 0], [1, 1]] and read_config.torch_dtype == "float16"
    assert_bit_identical(dict(tensors), weights)  # the sinusoids recomputed equal the stored ones


def test_mlx_reads_npz_weights(tmp_path):
    config = _openai_config()
    weights = random_weights(config, "float32")
    foreign = engine.from_canonical(weights, "mlx", config)
    np.savez(tmp_path / "weights.npz", **foreign)
    (tmp_path / "config.json").write_text(json.dumps({**_dims(config), "model_type": "whisper"}))
    assert mlx.is_mlx(tmp_path)
    _, tensors, heads = mlx.read(tmp_path)
    assert heads is None
    assert_bit_identical(dict(tensors), weights)


def _dims(config):
    from weights_bridge import openai_pt

    return openai_pt.dims_from_config(config)


def test_mlx_refuses_what_it_cannot_hold_or_read(tmp_path):
    config = _openai_config()
    trained = random_weights(config, "float32")
    trained[ENCODER_POSITIONS] = trained[ENCODER_POSITIONS] + 0.5
    with pytest.raises(
        ValueError, match=r"mlx does not store model\.encoder\.embed_positions\.weight, its runtime computes it"
    ):
        mlx.write(tmp_path / "out", trained, config, None)
    assert not (tmp_path / "out").exists()
    directory = tmp_path / "q"
    directory.mkdir()
    (directory / "weights.safetensors").write_bytes(b"not safetensors")
    (directory / "config.json").write_text(json.dumps({**_dims(config), "quantization": {"bits": 4}}))
    with pytest.raises(ValueError, match=r"config\.json: this is an MLX-quantized model"):
        mlx.read(directory)
    (directory / "config.json").write_text(json.dumps({**_dims(config), "n_extra": 1}))
    with pytest.raises(ValueError, match=r"unknown \['n_extra'\]"):
        mlx.read(directory)
    (directory / "config.json").write_text(json.dumps(_dims(config)))
    with pytest.raises(ValueError, match=r"weights\.safetensors: not a readable safetensors file"):
        mlx.read(directory)


def test_ct2_int8_variables_quantize_and_come_back(tmp_path):
    config = small_config()
    weights = random_weights(config, "float32")
    variables = engine.from_canonical(weights, "ct2", config)
    quantized = dict(ctranslate2.quantize(variables, engine.foreign_kinds(config, "ct2")))
    assert quantized["encoder/conv1/weight"].dtype == np.int8
    assert quantized["encoder/conv1/weight_scale"].shape == (8,)
    assert quantized["decoder/embeddings/weight"].dtype == np.int8
    assert quantized["decoder/layer_0/self_attention/linear_0/weight_scale"].shape == (24,)
    assert quantized["decoder/layer_0/self_attention/linear_0/bias"].dtype == np.float32
    model = ctranslate2.Ct2Model(dict(sorted(quantized.items())))
    ctranslate2.write_model(tmp_path / "model.bin", model)
    restored = ctranslate2.dequantize(ctranslate2.read_model(tmp_path / "model.bin"))
    assert not any(name.endswith("_scale") for name in restored.variables)
    for name, array in variables.items():
        step = np.abs(array).max() / 127
        np.testing.assert_allclose(restored.variables[name], array, atol=step, err_msg=name)
    assert restored.variables["encoder/conv1/bias"].tobytes() == variables["encoder/conv1/bias"].tobytes()
    half = ctranslate2.dequantize(ctranslate2.read_model(tmp_path / "model.bin"), "float16")
    assert half.variables["encoder/conv1/weight"].dtype == np.float16


def test_ct2_int16_and_broken_scales():
    values = np.array([[1024, -512]], np.int16)
    model = ctranslate2.Ct2Model({"x/weight": values, "x/weight_scale": np.array(1024.0, np.float32)})
    np.testing.assert_array_equal(ctranslate2.dequantize(model).variables["x/weight"], [[1.0, -0.5]])
    bad = ctranslate2.Ct2Model({"x/weight": np.ones((2, 3), np.int8), "x/weight_scale": np.ones(3, np.float32)})
    with pytest.raises(ValueError, match=r"model\.bin: x/weight_scale must be positive float32 of shape \(2,\)"):
        ctranslate2.dequantize(bad)
    orphan = ctranslate2.Ct2Model({"x/weight": np.ones((2, 3), np.float32), "x/weight_scale": np.ones(2, np.float32)})
    with pytest.raises(ValueError, match=r"x/weight_scale scales x/weight, which is float32"):
        ctranslate2.dequantize(orphan)
    unscaled = ctranslate2.Ct2Model({"x/weight": np.ones((2, 3), np.int8), "y/weight_scale": np.ones(2, np.float32)})
    with pytest.raises(ValueError, match="which is missing"):
        ctranslate2.dequantize(unscaled)
