"""convert_checkpoint and ``whisper-mb convert``: every target, chains, atomic failures, the real tiny.en."""

from __future__ import annotations

import json

import pytest

from weights_bridge import canonical, fetch
from weights_bridge.conversion import convert_checkpoint, read_checkpoint
from weights_bridge.verify import read_written
from whisper_core import GenerationConfig, data_packages
from whisper_core.cli import main

from .helpers import assert_bit_identical, random_weights, small_config


@pytest.fixture
def small_checkpoint(tmp_path):
    config = small_config()
    config.encoder_ffn_dim = config.decoder_ffn_dim = 4 * config.d_model  # so openai-whisper can hold it
    weights = random_weights(config, "float32")
    directory = canonical.save_checkpoint(
        tmp_path / "src", weights, config, generation_config=GenerationConfig(decoder_start_token_id=1)
    )
    return directory, config, weights


@pytest.mark.parametrize("to", ["canonical", "pt", "tf", "flax", "openai"])
def test_every_target_reads_back_bit_identically(small_checkpoint, tmp_path, to):
    source, config, weights = small_checkpoint
    destination = convert_checkpoint(source, tmp_path / ("out.pt" if to == "openai" else "out"), to=to)
    assert_bit_identical(dict(read_written(destination, to, config)), weights)
    if to != "openai":
        assert json.loads((destination / "preprocessor_config.json").read_text())["feature_size"] == 4


def test_chain_through_every_format_and_dtype_cast(small_checkpoint, tmp_path):
    source, config, weights = small_checkpoint
    tf = convert_checkpoint(source, tmp_path / "tf", to="tf")
    (tf / "model.safetensors").unlink()  # make the next step read tf_model.h5
    flax = convert_checkpoint(tf, tmp_path / "flax", to="flax")
    (flax / "model.safetensors").unlink()
    openai = convert_checkpoint(flax, tmp_path / "model.pt", to="openai")
    back = convert_checkpoint(openai, tmp_path / "back", to="canonical")
    assert_bit_identical(dict(read_checkpoint(back).tensors), weights)
    half = convert_checkpoint(source, tmp_path / "half", to="flax", dtype="float16")
    expected = {name: array.astype("float16") for name, array in weights.items()}
    assert_bit_identical(dict(read_written(half, "flax", config)), expected)
    assert json.loads((half / "config.json").read_text())["torch_dtype"] == "float16"


def test_failed_conversion_leaves_nothing(small_checkpoint, tmp_path):
    source, _, _ = small_checkpoint
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match=r"src has no tokenizer\.json, which a CTranslate2 model needs"):
        convert_checkpoint(source, out / "ct2", to="ct2")
    assert list(out.iterdir()) == []
    (out / "taken").mkdir()
    (out / "taken" / "file").write_text("x")
    with pytest.raises(FileExistsError, match="already exists"):
        convert_checkpoint(source, out / "taken", to="tf")
    with pytest.raises(ValueError, match="unknown target format 'keras'"):
        convert_checkpoint(source, out / "k", to="keras")


@pytest.mark.slow
def test_tiny_en_every_format_and_back_to_ct2_bytes(tmp_path):
    """tiny.en from its CT2 data package through every format, ending in CT2 byte for byte."""
    metadata = data_packages.metadata_dir("tiny.en")
    source = fetch("tiny.en")
    weights = dict(read_checkpoint(source).tensors)
    chain, previous = [], source
    for to in ("tf", "flax", "ct2", "openai", "canonical"):
        previous = convert_checkpoint(previous, tmp_path / (f"{to}.pt" if to == "openai" else to), to=to)
        assert_bit_identical(dict(read_written(previous, to, read_checkpoint(source).config)), weights)
        chain.append(previous)
    ct2 = chain[2]
    for name in ("model.bin", "vocabulary.txt"):
        assert (ct2 / name).read_bytes() == (metadata / name).read_bytes(), name
    # The openai file carries no generation settings; after it, they are derived from the config.
    assert read_checkpoint(chain[-1]).config.d_model == 384


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_openai_file_gets_the_special_token_ids_of_the_real_checkpoint(name, tmp_path):
    """An openai-whisper ``.pt`` holds no tokenizer: its token ids come from the vocabulary layout and
    must equal those of the real checkpoint's generation config (HF's values)."""
    source = fetch(name)
    expected = read_checkpoint(source).generation_config
    derived = read_checkpoint(convert_checkpoint(source, tmp_path / "model.pt", to="openai")).generation_config
    keys = ["no_timestamps_token_id", "prev_sot_token_id", "decoder_start_token_id", "eos_token_id", "is_multilingual"]
    if name == "base":
        keys += ["lang_to_id", "task_to_id"]
    else:
        assert derived.lang_to_id in (None, {}) and expected.lang_to_id in (None, {})
    for key in keys:
        assert getattr(derived, key) == getattr(expected, key), key
    if name == "tiny.en":  # the same file in bfloat16 (as a fine-tune may be saved): read as float32, exactly
        import torch

        checkpoint = torch.load(tmp_path / "model.pt")
        checkpoint["model_state_dict"] = {k: t.bfloat16() for k, t in checkpoint["model_state_dict"].items()}
        torch.save(checkpoint, tmp_path / "bf16.pt")
        tensors = dict(read_checkpoint(tmp_path / "bf16.pt").tensors)
        for key, array in read_checkpoint(source).tensors.items():
            assert tensors[key].tobytes() == torch.from_numpy(array).bfloat16().float().numpy().tobytes(), key


@pytest.mark.slow
def test_cli_convert_with_verify(tmp_path, capsys, jfk_path):
    code = main(["convert", "tiny.en", str(tmp_path / "flax"), "--to", "flax", "--verify", "--audio", str(jfk_path)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["verify"]["bit_identical"] == report["verify"]["tensors"] == 167
    assert report["verify"]["max_abs_logit_diff"] == 0.0
    code = main(["convert", "tiny.en", str(tmp_path / "half"), "--to", "ct2", "--dtype", "float32", "--verify",
                 "--audio", str(jfk_path)])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["verify"]["cast"] == 167
    assert report["verify"]["max_abs_logit_diff"] <= 1e-4
    assert main(["convert", "tiny.en", str(tmp_path / "flax"), "--to", "tf"]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
