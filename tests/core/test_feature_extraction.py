"""Log-mel features against transformers 4.57.6 (both its paths) and openai-whisper, on real speech."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from whisper_core import WhisperFeatureExtractor, load_audio
from whisper_core.feature_extraction import PREPROCESSOR_CONFIG_NAME, mel_filter_bank

TOLERANCE = 1e-4  # DESIGN.md §3: log-mel features


def reference(**kwargs):
    from transformers import WhisperFeatureExtractor as Reference

    return Reference(**kwargs)


def reference_numpy_path(monkeypatch, extractor, *args, **kwargs):
    """transformers' NumPy path (the one it takes without torch)."""
    import transformers.models.whisper.feature_extraction_whisper as module

    monkeypatch.setattr(module, "is_torch_available", lambda: False)
    return extractor(*args, **kwargs)


def openai_log_mel(audio: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """openai-whisper's recipe (audio.py): pad 30 s of zeros, torch STFT, its shipped filters, first 3000 frames."""
    import torch

    waveform = torch.from_numpy(np.pad(audio, (0, 480000)))
    stft = torch.stft(waveform, 400, 160, window=torch.hann_window(400), return_complex=True)
    power = stft[..., :-1].abs() ** 2
    log_spec = torch.clamp(torch.from_numpy(filters) @ power, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).numpy()[:, :3000]


@pytest.mark.parametrize("mels", [80, 128])
def test_mel_filters_match_openai_and_transformers(openai_assets, mels):
    shipped = np.load(openai_assets / "mel_filters.npz")[f"mel_{mels}"]
    ours = mel_filter_bank(16000, 400, mels, 0.0, 8000.0)
    assert np.abs(ours.T - shipped).max() < 1e-8
    assert (
        np.abs(WhisperFeatureExtractor(feature_size=mels).mel_filters - reference(feature_size=mels).mel_filters).max()
        < 1e-12
    )


def test_jfk_matches_transformers_both_paths(jfk_audio, monkeypatch):
    ours = WhisperFeatureExtractor()(jfk_audio, sampling_rate=16000)["input_features"]
    assert ours.shape == (1, 80, 3000) and ours.dtype == np.float32
    theirs_torch = reference()(jfk_audio, sampling_rate=16000)["input_features"]
    theirs_numpy = reference_numpy_path(monkeypatch, reference(), jfk_audio, sampling_rate=16000)["input_features"]
    assert np.abs(ours - theirs_torch).max() <= TOLERANCE
    assert np.abs(ours - theirs_numpy).max() <= TOLERANCE


@pytest.mark.parametrize("mels", [80, 128])
def test_jfk_matches_openai_whisper(jfk_audio, openai_assets, mels):
    filters = np.load(openai_assets / "mel_filters.npz")[f"mel_{mels}"]
    ours = WhisperFeatureExtractor(feature_size=mels)(jfk_audio, sampling_rate=16000)["input_features"][0]
    assert np.abs(ours - openai_log_mel(jfk_audio, filters)).max() <= TOLERANCE


def test_synthesized_speech_batch_matches_transformers(synthesized_speech):
    clips = [load_audio(path) for path in synthesized_speech.values()]
    assert len({len(clip) for clip in clips}) > 1, "want clips of different lengths"
    for kwargs in (
        {},
        {"padding": "longest", "return_attention_mask": True},
        {"padding": "longest", "pad_to_multiple_of": 16000, "return_attention_mask": True},
        {"do_normalize": True, "return_attention_mask": True},
        {"max_length": 32000, "truncation": True, "padding": "max_length", "return_attention_mask": True},
    ):
        ours = WhisperFeatureExtractor()(clips, sampling_rate=16000, **kwargs)
        theirs = reference()(clips, sampling_rate=16000, **kwargs)
        assert ours["input_features"].shape == theirs["input_features"].shape, kwargs
        assert np.abs(ours["input_features"] - theirs["input_features"]).max() <= TOLERANCE, kwargs
        if kwargs.get("return_attention_mask"):
            assert np.array_equal(ours["attention_mask"], theirs["attention_mask"]), kwargs


@pytest.mark.parametrize(
    "settings",
    [
        {"n_fft": 512},
        {"n_fft": 401},
        {"hop_length": 128, "chunk_length": 10},
        {"feature_size": 128},
        {"sampling_rate": 8000, "chunk_length": 5},
    ],
)
def test_other_settings_match_transformers(jfk_audio, settings):
    rate = settings.get("sampling_rate", 16000)
    audio = jfk_audio[: rate * 4]
    ours = WhisperFeatureExtractor(**settings)(audio, sampling_rate=rate)["input_features"]
    theirs = reference(**settings)(audio, sampling_rate=rate)["input_features"]
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= TOLERANCE


def test_unpadded_clips_of_different_lengths(synthesized_speech):
    clips = [load_audio(path) for path in synthesized_speech.values()]
    ours = WhisperFeatureExtractor()(clips, sampling_rate=16000, padding="do_not_pad")["input_features"]
    assert [item.shape[-1] for item in ours] == [len(clip) // 160 for clip in clips]
    single = WhisperFeatureExtractor()(clips[0], sampling_rate=16000, padding="do_not_pad")["input_features"]
    assert np.abs(single[0] - ours[0]).max() == 0.0


@pytest.mark.parametrize("framework", ["np", "pt", "tf", "jax"])
def test_return_tensors(jfk_audio, framework):
    features = WhisperFeatureExtractor()(jfk_audio, sampling_rate=16000, return_tensors=framework)["input_features"]
    assert tuple(features.shape) == (1, 80, 3000)
    assert (
        np.abs(np.asarray(features) - WhisperFeatureExtractor()(jfk_audio, sampling_rate=16000)["input_features"]).max()
        == 0
    )


def test_dither_changes_features_slightly(jfk_audio):
    plain = WhisperFeatureExtractor()(jfk_audio, sampling_rate=16000)["input_features"]
    dithered = WhisperFeatureExtractor(dither=1e-5)(jfk_audio, sampling_rate=16000)["input_features"]
    difference = np.abs(plain - dithered)
    assert difference.max() > 0 and np.median(difference) < 0.05


def test_token_timestamp_frames(jfk_audio):
    result = WhisperFeatureExtractor()(jfk_audio, sampling_rate=16000, return_token_timestamps=True)
    assert result["num_frames"] == [len(jfk_audio) // 160]


def test_save_and_load_with_transformers(tmp_path):
    reference(feature_size=128, dither=0.5).save_pretrained(tmp_path)
    ours = WhisperFeatureExtractor.from_pretrained(tmp_path)
    assert ours.feature_size == 128 and ours.dither == 0.5
    ours.save_pretrained(tmp_path / "again")
    data = json.loads((tmp_path / "again" / "preprocessor_config.json").read_text())
    assert data["feature_extractor_type"] == "WhisperFeatureExtractor" and "mel_filters" not in data
    from transformers import WhisperFeatureExtractor as Reference

    assert Reference.from_pretrained(tmp_path / "again").feature_size == 128


NOTICE = "has no preprocessor_config.json: using the WhisperFeatureExtractor defaults for"
# The settings a feature extractor's output depends on (to_dict also carries bookkeeping keys).
SETTINGS = ("feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft", "padding_value", "dither")


def notices(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if NOTICE in r.getMessage()]


def test_a_checkpoint_with_preprocessor_config_is_read_as_from_pretrained(tiny_en_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="whisper_core.feature_extraction"):
        ours = WhisperFeatureExtractor.for_checkpoint(tiny_en_dir)
    assert ours.to_dict() == WhisperFeatureExtractor.from_pretrained(tiny_en_dir).to_dict()
    assert not notices(caplog)


def test_without_preprocessor_config_the_config_mel_bins_give_the_same_extractor(
    tiny_en_dir, tmp_path, jfk_audio, caplog
):
    shutil.copy(tiny_en_dir / "config.json", tmp_path / "config.json")
    with caplog.at_level(logging.WARNING, logger="whisper_core.feature_extraction"):
        ours = WhisperFeatureExtractor.for_checkpoint(tmp_path)
        again = WhisperFeatureExtractor.for_checkpoint(str(tmp_path))  # same directory: no second notice
    real = WhisperFeatureExtractor.from_pretrained(tiny_en_dir)  # the real preprocessor_config.json
    assert ours.to_dict() == real.to_dict() == again.to_dict()
    assert (
        ours(jfk_audio, sampling_rate=16000)["input_features"] == real(jfk_audio, sampling_rate=16000)["input_features"]
    ).all()
    (notice,) = notices(caplog)
    assert str(tmp_path) in notice and "defaults for 80 mel bins" in notice


def test_128_mel_bins_give_transformers_defaults_for_128_mels(tiny_en_dir, tmp_path, caplog):
    config = json.loads((tiny_en_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_mel_bins": 128}))
    with caplog.at_level(logging.WARNING, logger="whisper_core.feature_extraction"):
        ours = WhisperFeatureExtractor.for_checkpoint(tmp_path)
    theirs = reference(feature_size=128)
    assert {key: getattr(ours, key) for key in SETTINGS} == {key: getattr(theirs, key) for key in SETTINGS}
    assert np.abs(ours.mel_filters - theirs.mel_filters).max() < 1e-12
    (notice,) = notices(caplog)
    assert str(tmp_path) in notice and "defaults for 128 mel bins" in notice


def test_a_directory_without_either_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} has neither {PREPROCESSOR_CONFIG_NAME} nor config.json"):
        WhisperFeatureExtractor.for_checkpoint(tmp_path)


def test_a_ctranslate2_config_does_not_pass_for_a_mel_count(tiny_en_tokenizer_dir):
    # The data package's CTranslate2 config.json says nothing about mels: guessing 80 would be wrong for large-v3.
    with pytest.raises(ValueError, match="not a transformers Whisper config"):
        WhisperFeatureExtractor.for_checkpoint(tiny_en_tokenizer_dir)


@pytest.mark.parametrize(
    ("audio", "kwargs", "message"),
    [
        (np.zeros(16000, np.float32), {"sampling_rate": 44100}, "44100 Hz.*16000 Hz"),
        (np.zeros((16000, 2), np.float32), {"sampling_rate": 16000}, "multi-channel"),
        (np.zeros((2, 16000, 1), np.float32), {"sampling_rate": 16000}, "mono"),
        ([np.zeros((100, 2), np.float32)], {"sampling_rate": 16000}, "mono"),
        (np.zeros(0, np.float32), {"sampling_rate": 16000}, "empty"),
        (np.array([0.0, np.nan] * 1000, np.float32), {"sampling_rate": 16000}, "NaN"),
        (np.array([0.0, np.inf] * 1000, np.float32), {"sampling_rate": 16000}, "infinite"),
        (np.zeros(16000, np.int16), {"sampling_rate": 16000}, "integers"),
        (np.zeros(16000, np.float32), {"sampling_rate": 16000, "padding": "middle"}, "padding"),
        (np.zeros(16000, np.float32), {"sampling_rate": 16000, "return_tensors": "mx"}, "return_tensors"),
    ],
)
def test_bad_input_is_refused(audio, kwargs, message):
    with pytest.raises(ValueError, match=message):
        WhisperFeatureExtractor()(audio, **kwargs)
