"""Building canonical checkpoints from the real data packages, checked against transformers 4.57.6."""

from __future__ import annotations

import importlib
import json
import os

import numpy as np
import pytest

from weights_bridge import ctranslate2, data_packages
from weights_bridge.canonical import load_checkpoint
from whisper_core import GenerationConfig, WhisperConfig, WhisperFeatureExtractor

# The module, not the function of the same name that weights_bridge re-exports.
fetch = importlib.import_module("weights_bridge.fetching")
pytestmark = pytest.mark.slow

EXPECTED_CONFIG = {
    "tiny.en": dict(
        d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6, decoder_attention_heads=6,
        encoder_ffn_dim=1536, vocab_size=51864, num_mel_bins=80, max_source_positions=1500, max_target_positions=448,
        decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256, bos_token_id=50257,
        begin_suppress_tokens=[220, 50256],
    ),
    "base": dict(
        d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
        encoder_ffn_dim=2048, vocab_size=51865, num_mel_bins=80, max_source_positions=1500, max_target_positions=448,
        decoder_start_token_id=50258, eos_token_id=50257, pad_token_id=50257, bos_token_id=50257,
        begin_suppress_tokens=[220, 50257],
    ),
}  # fmt: skip
EXPECTED_GENERATION = {
    "tiny.en": dict(
        decoder_start_token_id=50257, eos_token_id=50256, no_timestamps_token_id=50362, prev_sot_token_id=50360,
        is_multilingual=False, lang_to_id=None, task_to_id=None, max_initial_timestamp_index=50, max_length=448,
        alignment_heads=[[1, 0], [2, 0], [2, 5], [3, 0], [3, 1], [3, 2], [3, 3], [3, 4]],
    ),
    "base": dict(
        decoder_start_token_id=50258, eos_token_id=50257, no_timestamps_token_id=50363, prev_sot_token_id=50361,
        is_multilingual=True, task_to_id={"transcribe": 50359, "translate": 50358}, max_initial_timestamp_index=50,
        max_length=448, alignment_heads=[[3, 1], [4, 2], [4, 3], [4, 7], [5, 1], [5, 2], [5, 4], [5, 6]],
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("whisper-mb")


@pytest.fixture(scope="module")
def checkpoints(cache):
    return {name: fetch.fetch(name, cache_dir=cache) for name in ("tiny.en", "base")}


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_config_values(checkpoints, name):
    directory = checkpoints[name]
    config = WhisperConfig.from_pretrained(directory)
    for key, value in EXPECTED_CONFIG[name].items():
        assert getattr(config, key) == value, key
    ct2_config = ctranslate2.read_config(data_packages.metadata_dir(name))
    assert config.suppress_tokens == ct2_config["suppress_ids"]
    generation = GenerationConfig.from_pretrained(directory)
    for key, value in EXPECTED_GENERATION[name].items():
        assert getattr(generation, key) == value, key
    assert generation.suppress_tokens == ct2_config["suppress_ids"]
    assert generation.begin_suppress_tokens == ct2_config["suppress_ids_begin"]
    if name == "base":
        assert len(generation.lang_to_id) == 99
        assert generation.lang_to_id["<|en|>"] == 50259 and generation.lang_to_id["<|su|>"] == 50357
    assert WhisperFeatureExtractor.from_pretrained(directory).feature_size == 80
    assert (directory / "normalizer.json").is_file() and (directory / "tokenizer.json").is_file()


def test_weights_are_the_ct2_values_bit_for_bit(checkpoints):
    _, tensors = load_checkpoint(checkpoints["tiny.en"])
    model = ctranslate2.read_model(data_packages.weight_parts("tiny.en"))
    fused = model.variables["decoder/layer_2/self_attention/linear_0/weight"]  # [3·384, 384] = q | k | v
    assert tensors["model.decoder.layers.2.self_attn.v_proj.weight"].tobytes() == fused[768:].tobytes()
    assert tensors["model.decoder.embed_tokens.weight"].dtype == np.float16
    assert json.loads((checkpoints["tiny.en"] / "config.json").read_text())["torch_dtype"] == "float16"


def test_fetch_is_idempotent_and_honours_the_environment(checkpoints, cache, monkeypatch):
    weights = checkpoints["tiny.en"] / "model.safetensors"
    before = weights.stat().st_mtime_ns
    monkeypatch.setenv("WHISPER_MB_HOME", str(cache))
    assert fetch.cache_home() == cache
    assert fetch.fetch("tiny.en") == checkpoints["tiny.en"]
    assert weights.stat().st_mtime_ns == before


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def broken_build(name, directory):
        (directory / "config.json").write_text("{}")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(fetch, "build_checkpoint", broken_build)
    with pytest.raises(RuntimeError, match="interrupted"):
        fetch.fetch("tiny.en", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_incomplete_leftover_is_rebuilt(tmp_path):
    leftover = tmp_path / "tiny.en"
    leftover.mkdir()
    (leftover / "config.json").write_text("{}")
    assert fetch.fetch("tiny.en", cache_dir=tmp_path) == leftover
    assert fetch.is_complete(leftover)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.en"]


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no data package for model 'large'"):
        fetch.fetch("large", cache_dir=tmp_path)


def test_transformers_loads_the_checkpoints(checkpoints, jfk_audio):
    """transformers 4.57.6 finds exactly the tensors it expects, and real speech gives finite logits."""
    torch = pytest.importorskip("torch")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers import WhisperForConditionalGeneration

    for name, directory in checkpoints.items():
        model, info = WhisperForConditionalGeneration.from_pretrained(directory, output_loading_info=True)
        assert info["missing_keys"] == [] and info["unexpected_keys"] == [], name
        assert info["mismatched_keys"] == [] and info["error_msgs"] == [], name
        assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
        features = WhisperFeatureExtractor.from_pretrained(directory)(jfk_audio[:32000], sampling_rate=16000)
        start = torch.tensor([[model.config.decoder_start_token_id]])
        with torch.no_grad():
            logits = model(input_features=torch.from_numpy(features.input_features), decoder_input_ids=start).logits
        assert logits.shape == (1, 1, EXPECTED_CONFIG[name]["vocab_size"])
        assert torch.isfinite(logits).all()
