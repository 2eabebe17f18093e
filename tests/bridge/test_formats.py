"""HF TF h5, HF Flax msgpack and openai .pt files: round trips, transformers' own files, and broken files."""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from weights_bridge import canonical, engine, flax_msgpack, openai_pt, tf_h5

from .helpers import assert_bit_identical, random_weights, small_config

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _openai_config():
    """openai-whisper fixes the feed-forward width at 4·d_model."""
    config = small_config()
    config.encoder_ffn_dim = config.decoder_ffn_dim = 4 * config.d_model
    return config


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_tf_and_flax_files_round_trip_bit_identical(tmp_path, dtype):
    config = small_config()
    weights = random_weights(config, dtype)
    tf_h5.from_canonical(tmp_path / "tf_model.h5", weights, config)
    flax_msgpack.from_canonical(tmp_path / "flax_model.msgpack", weights, config)
    assert_bit_identical(dict(tf_h5.to_canonical(tmp_path / "tf_model.h5", config)), weights)
    assert_bit_identical(dict(flax_msgpack.to_canonical(tmp_path / "flax_model.msgpack", config)), weights)
    with h5py.File(tmp_path / "tf_model.h5") as file:  # [k, in, out] and [in, out] layouts
        group = file["model/tf_whisper_for_conditional_generation/model"]
        assert group["encoder/conv1/kernel:0"].shape == (3, 4, 8)
        assert group["decoder/layers.1/fc1/kernel:0"].shape == (8, 12)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_openai_file_round_trips_with_dims(tmp_path, dtype):
    pytest.importorskip("torch")
    config = _openai_config()
    weights = random_weights(config, dtype)
    openai_pt.write(tmp_path / "model.pt", weights, config)
    loaded_config, loaded = openai_pt.read(tmp_path / "model.pt")
    assert_bit_identical(loaded, weights)
    assert openai_pt.dims_from_config(loaded_config) == openai_pt.dims_from_config(config)
    assert openai_pt.dims_from_config(config)["n_text_ctx"] == 5


def test_openai_refuses_configs_it_cannot_express(tmp_path):
    config = small_config()  # ffn 16 / 12 with d_model 8
    with pytest.raises(ValueError, match="encoder_ffn_dim 16 is not 4 x d_model 8"):
        openai_pt.write(tmp_path / "model.pt", random_weights(config), config)
    assert not (tmp_path / "model.pt").exists()


def _import_openai_model():
    """openai-whisper's model.py without its package, whose __init__ needs tiktoken (not installed here).

    model.py imports decoding and transcribe only for methods the weights check does not call, so
    empty stand-ins for those two modules are enough.
    """
    spec = importlib.util.find_spec("whisper")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("openai-whisper is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    saved = {name: sys.modules.get(name) for name in ("whisper", "whisper.decoding", "whisper.transcribe")}
    package = types.ModuleType("whisper")
    package.__path__ = [str(root)]
    stubs = {
        "whisper": package,
        "whisper.decoding": types.SimpleNamespace(decode=None, detect_language=None),
        "whisper.transcribe": types.SimpleNamespace(transcribe=None),
    }
    try:
        sys.modules.update(stubs)
        model_spec = importlib.util.spec_from_file_location("whisper.model", root / "model.py")
        module = importlib.util.module_from_spec(model_spec)
        model_spec.loader.exec_module(module)
    finally:
        for name, original in saved.items():
            if original is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = original
    return module


def test_openai_file_loads_into_openai_whisper(tmp_path):
    torch = pytest.importorskip("torch")
    whisper_model = _import_openai_model()
    config = _openai_config()
    weights = random_weights(config, "float32")
    openai_pt.write(tmp_path / "model.pt", weights, config)
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    model = whisper_model.Whisper(whisper_model.ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])  # strict: every name and shape
    assert model.decoder.token_embedding.weight.detach().numpy().tobytes() == (
        weights["model.decoder.embed_tokens.weight"].tobytes()
    )
    assert model.encoder.blocks[1].mlp[2].weight.detach().numpy().tobytes() == (
        weights["model.encoder.layers.1.fc2.weight"].tobytes()
    )


# -- files written by transformers 4.57.6 -------------------------------------------------------
@pytest.fixture(scope="module")
def transformers_files(tmp_path_factory):
    """One random PyTorch model saved by transformers as safetensors and .bin, then as TF and Flax via from_pt."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("transformers")
    torch.manual_seed(0)
    config = transformers.WhisperConfig(**small_config().to_dict())
    model = transformers.WhisperForConditionalGeneration(config)
    model.save_pretrained(root / "safetensors")
    model.save_pretrained(root / "bin", safe_serialization=False)
    transformers.TFWhisperForConditionalGeneration.from_pretrained(root / "safetensors", from_pt=True).save_pretrained(
        root / "tf"
    )
    transformers.FlaxWhisperForConditionalGeneration.from_pretrained(
        root / "safetensors", from_pt=True
    ).save_pretrained(root / "flax")
    return root


def test_transformers_files_read_bit_identically(transformers_files):
    config, expected = canonical.load_checkpoint(transformers_files / "safetensors")
    assert_bit_identical(canonical.load_weights(transformers_files / "bin", config), expected)
    assert_bit_identical(dict(tf_h5.to_canonical(transformers_files / "tf" / "tf_model.h5", config)), expected)
    flax_file = transformers_files / "flax" / "flax_model.msgpack"
    assert_bit_identical(dict(flax_msgpack.to_canonical(flax_file, config)), expected)


def test_our_files_load_in_transformers(transformers_files, tmp_path):
    transformers = pytest.importorskip("transformers")
    from flax.traverse_util import flatten_dict

    config, expected = canonical.load_checkpoint(transformers_files / "safetensors")
    config.save_pretrained(tmp_path)
    tf_h5.from_canonical(tmp_path / "tf_model.h5", expected, config)
    flax_msgpack.from_canonical(tmp_path / "flax_model.msgpack", expected, config)
    tf_model = transformers.TFWhisperForConditionalGeneration.from_pretrained(tmp_path)
    tf_weights = {v.name.split("/", 1)[1]: v.numpy() for v in tf_model.weights}  # drop the Keras model name
    assert_bit_identical(dict(engine.canonical_view(tf_weights, "hf_tf", config)), expected)
    flax_model = transformers.FlaxWhisperForConditionalGeneration.from_pretrained(tmp_path)
    flax_weights = {k: np.asarray(v) for k, v in flatten_dict(flax_model.params, sep="/").items()}
    assert_bit_identical(engine.to_canonical(flax_weights, "hf_flax", config), expected)


def test_transformers_directories_convert_through_the_bridge(transformers_files, tmp_path):
    """Each directory transformers wrote (safetensors, .bin, TF h5, Flax msgpack) reads and converts whole."""
    from weights_bridge.conversion import convert_checkpoint, read_checkpoint

    _, expected = canonical.load_checkpoint(transformers_files / "safetensors")
    for kind, format_name in (("safetensors", "safetensors"), ("bin", "pytorch_model.bin"),
                              ("tf", "tf_model.h5"), ("flax", "flax_model.msgpack")):  # fmt: skip
        checkpoint = read_checkpoint(transformers_files / kind)
        assert checkpoint.format == format_name
        assert_bit_identical(dict(checkpoint.tensors), expected)
        converted = convert_checkpoint(transformers_files / kind, tmp_path / kind, to="canonical")
        assert_bit_identical(canonical.load_checkpoint(converted)[1], expected)


def test_bfloat16_files_are_read_as_float32_exactly(transformers_files, tmp_path):
    """bfloat16 checkpoints written by transformers (safetensors, .bin, Flax msgpack): every tensor comes
    back as float32 holding exactly the bfloat16 values."""
    import torch
    import transformers

    from weights_bridge.conversion import read_checkpoint

    _, stored = canonical.load_checkpoint(transformers_files / "safetensors")
    expected = {name: torch.from_numpy(array).bfloat16().float().numpy() for name, array in stored.items()}
    model = transformers.WhisperForConditionalGeneration.from_pretrained(
        transformers_files / "safetensors", torch_dtype=torch.bfloat16
    )
    model.save_pretrained(tmp_path / "safetensors")
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    flax_model = transformers.FlaxWhisperForConditionalGeneration.from_pretrained(transformers_files / "flax")
    flax_model.params = flax_model.to_bf16(flax_model.params)
    flax_model.save_pretrained(tmp_path / "flax")
    for kind in ("safetensors", "bin", "flax"):
        tensors = dict(read_checkpoint(tmp_path / kind).tensors)
        assert {array.dtype for array in tensors.values()} == {np.dtype(np.float32)}, kind
        assert_bit_identical(tensors, expected)


# -- broken files ----------------------------------------------------------------------------------
@pytest.fixture
def written(tmp_path):
    config = small_config()
    weights = random_weights(config)
    tf_h5.from_canonical(tmp_path / "tf_model.h5", weights, config)
    flax_msgpack.from_canonical(tmp_path / "flax_model.msgpack", weights, config)
    return tmp_path, config


@pytest.mark.parametrize("name", ["tf_model.h5", "flax_model.msgpack"])
@pytest.mark.parametrize("keep", [0.3, 0.97])
def test_truncated_files_name_the_file(written, name, keep):
    directory, config = written
    path = directory / name
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    reader = tf_h5 if name.endswith(".h5") else flax_msgpack
    with pytest.raises(ValueError, match=rf"{path}: .*(truncated|not a readable HDF5|corrupt|cannot read)"):
        dict(reader.to_canonical(path, config))


def test_wrong_format_files_are_named(written):
    directory, config = written
    (directory / "swap.h5").write_bytes((directory / "flax_model.msgpack").read_bytes())
    with pytest.raises(ValueError, match=r"swap\.h5: not a readable HDF5 file"):
        tf_h5.to_canonical(directory / "swap.h5", config)
    (directory / "swap.msgpack").write_bytes((directory / "tf_model.h5").read_bytes())
    with pytest.raises(ValueError, match=r"swap\.msgpack: .*not a flax msgpack file"):
        flax_msgpack.to_canonical(directory / "swap.msgpack", config)


def test_missing_and_misshapen_tensors_are_named(written):
    directory, config = written
    path = directory / "tf_model.h5"
    with h5py.File(path, "a") as file:
        del file["model/tf_whisper_for_conditional_generation/model/decoder/layers.1/fc2/bias:0"]
    with pytest.raises(
        ValueError, match=r"tf_model\.h5: tensor .*decoder/layers\.1/fc2/bias:0 is listed .* not stored"
    ):
        tf_h5.to_canonical(path, config)
    weights = random_weights(config)
    foreign = dict(engine.from_canonical(weights, "hf_flax", config))
    del foreign["model/encoder/layer_norm/scale"]
    foreign["model/encoder/conv1/kernel"] = np.zeros((3, 5, 8), "float16")
    flax_msgpack.write_weights(directory / "bad.msgpack", foreign)
    with pytest.raises(ValueError, match=r"bad\.msgpack: .*missing 1 tensor\(s\): model/encoder/layer_norm/scale"):
        flax_msgpack.to_canonical(directory / "bad.msgpack", config)
    foreign["model/encoder/layer_norm/scale"] = weights["model.encoder.layer_norm.weight"]
    flax_msgpack.write_weights(directory / "bad.msgpack", foreign)
    lazy = flax_msgpack.to_canonical(directory / "bad.msgpack", config)
    with pytest.raises(ValueError, match=r"bad\.msgpack: tensor model/encoder/conv1/kernel has shape \(3, 5, 8\)"):
        dict(lazy)


def test_failed_writes_leave_no_file(tmp_path):
    config = small_config()
    weights = random_weights(config)

    def broken() -> np.ndarray:
        raise OSError("disk full")

    lazy = engine.lazy(weights)
    failing = engine.LazyTensors(
        {name: (broken if name == "model.decoder.layer_norm.bias" else (lambda name=name: lazy[name])) for name in lazy}
    )
    for writer, name in ((tf_h5.from_canonical, "tf_model.h5"), (flax_msgpack.from_canonical, "flax_model.msgpack")):
        with pytest.raises(OSError, match="disk full"):
            writer(tmp_path / name, failing, config)
    assert list(tmp_path.iterdir()) == []
