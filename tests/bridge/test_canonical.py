"""The canonical checkpoint directory: bit-identical write/read, shards, pytorch_model.bin, atomic failures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weights_bridge import canonical
from whisper_core import GenerationConfig

from .helpers import assert_bit_identical, random_weights, small_config


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_write_read_is_bit_identical(tmp_path, dtype):
    config = small_config()
    weights = random_weights(config, dtype)
    canonical.save_checkpoint(tmp_path, weights, config, generation_config=GenerationConfig(decoder_start_token_id=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]
    loaded_config, loaded = canonical.load_checkpoint(tmp_path)
    assert loaded_config == config
    assert_bit_identical(loaded, weights)
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    # Written even though they equal whisper_core's defaults: transformers' defaults differ.
    assert generation["max_length"] == 448 and generation["max_initial_timestamp_index"] == 50
    assert generation["eos_token_id"] == 50256


def test_sharded_write_read_and_switching_back(tmp_path):
    config = small_config()
    weights = random_weights(config, "float32")
    written = canonical.save_weights(tmp_path, weights, max_shard_bytes=4096)
    assert len(written) > 3 and written[-1].name == "model.safetensors.index.json"
    index = json.loads(written[-1].read_text())
    assert set(index["weight_map"]) == set(weights)
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in weights.values())
    assert_bit_identical(canonical.load_weights(tmp_path, config), weights)
    canonical.save_weights(tmp_path, weights)  # single file again: the shards and index go
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_pytorch_model_bin_is_read_and_tied_copy_dropped(tmp_path):
    torch = pytest.importorskip("torch")
    config = small_config()
    weights = random_weights(config, "float32")
    state = {name: torch.from_numpy(array) for name, array in weights.items()}
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    config.save_pretrained(tmp_path)
    _, loaded = canonical.load_checkpoint(tmp_path)
    assert_bit_identical(loaded, weights)


def test_wrong_shape_is_refused_before_anything_is_written(tmp_path):
    config = small_config()
    weights = random_weights(config)
    weights["model.encoder.conv2.weight"] = np.zeros((8, 8, 2), "float16")
    with pytest.raises(ValueError, match=r"tensor model\.encoder\.conv2\.weight has shape \(8, 8, 2\)"):
        canonical.save_checkpoint(tmp_path / "out", weights, config)
    assert not (tmp_path / "out").exists()


def test_failed_weights_write_leaves_no_partial_file(tmp_path, monkeypatch):
    config = small_config()

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as file:
            file.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(canonical, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        canonical.save_weights(tmp_path, random_weights(config))
    assert list(tmp_path.iterdir()) == []


def test_corrupt_and_missing_weights_name_the_file(tmp_path):
    config = small_config()
    config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path} holds no weights"):
        canonical.load_weights(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'model.safetensors'}: not a readable safetensors file"):
        canonical.load_weights(tmp_path)
    weights = random_weights(config)
    del weights["model.decoder.layer_norm.bias"]
    canonical.save_weights(tmp_path, weights)
    with pytest.raises(
        ValueError, match=r"model\.safetensors: .*missing 1 tensor\(s\): model\.decoder\.layer_norm\.bias"
    ):
        canonical.load_weights(tmp_path)
