"""WhisperConfig and GenerationConfig against transformers 4.57.6."""

from __future__ import annotations

import json

import pytest

from whisper_core import GenerationConfig, WhisperConfig


def test_defaults_match_transformers():
    from transformers import WhisperConfig as Reference

    ours = WhisperConfig().to_dict()
    theirs = Reference().to_dict()
    for key, value in ours.items():
        if key in theirs:
            assert theirs[key] == value, (key, value, theirs[key])
    hyper_parameters = set(Reference.__init__.__code__.co_varnames[1 : Reference.__init__.__code__.co_argcount])
    assert hyper_parameters <= set(ours), hyper_parameters - set(ours)


def test_reads_transformers_config_unchanged(tmp_path):
    from transformers import WhisperConfig as Reference

    reference = Reference(
        d_model=512,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        num_mel_bins=128,
        vocab_size=51866,
    )
    reference.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["some_future_key"] = {"nested": [1, 2]}
    (tmp_path / "config.json").write_text(json.dumps(data))
    ours = WhisperConfig.from_pretrained(tmp_path)
    assert ours.d_model == 512 and ours.num_mel_bins == 128 and ours.vocab_size == 51866
    assert ours.some_future_key == {"nested": [1, 2]}
    ours.save_pretrained(tmp_path / "again")
    written = json.loads((tmp_path / "again" / "config.json").read_text())
    for key, value in data.items():
        assert written[key] == value, key
    assert Reference.from_pretrained(tmp_path / "again").to_dict()["d_model"] == 512


def test_aliases_and_labels():
    config = WhisperConfig(
        hidden_size=256,
        num_attention_heads=4,
        decoder_attention_heads=4,
        num_hidden_layers=3,
        id2label={"0": "a", "1": "b", "2": "c"},
    )
    assert (config.d_model, config.encoder_attention_heads, config.encoder_layers) == (256, 4, 3)
    assert config.num_labels == 3 and config.label2id == {"a": 0, "b": 1, "c": 2}
    assert WhisperConfig(num_labels=5).num_labels == 5
    assert WhisperConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"d_model": 100, "encoder_attention_heads": 6}, "divisible"),
        ({"decoder_attention_heads": 7}, "divisible"),
        ({"encoder_layers": 0}, "positive"),
        ({"dropout": 1.5}, r"\[0, 1\]"),
        ({"activation_function": "nope"}, "activation"),
        ({"decoder_start_token_id": 60000}, "outside the vocabulary"),
        ({"model_type": "bert"}, "model_type"),
    ],
)
def test_invalid_values_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        WhisperConfig.from_dict(overrides)


def test_generation_config_round_trip(tmp_path):
    from transformers import GenerationConfig as Reference

    reference = Reference(
        decoder_start_token_id=50258,
        no_timestamps_token_id=50363,
        lang_to_id={"<|en|>": 50259},
        task_to_id={"transcribe": 50359, "translate": 50358},
        is_multilingual=True,
        alignment_heads=[[3, 1], [4, 2]],
        suppress_tokens=[1, 2, 7],
        begin_suppress_tokens=[220, 50257],
        max_initial_timestamp_index=50,
        prev_sot_token_id=50361,
    )
    reference.save_pretrained(tmp_path)
    ours = GenerationConfig.from_pretrained(tmp_path)
    assert ours.lang_to_id == {"<|en|>": 50259} and ours.alignment_heads == [[3, 1], [4, 2]]
    assert ours.no_timestamps_token_id == 50363 and ours.is_multilingual is True
    ours.save_pretrained(tmp_path / "again")
    again = Reference.from_pretrained(tmp_path / "again")
    for key in (
        "lang_to_id",
        "task_to_id",
        "alignment_heads",
        "suppress_tokens",
        "begin_suppress_tokens",
        "no_timestamps_token_id",
    ):
        assert getattr(again, key) == getattr(reference, key), key
    assert GenerationConfig.from_pretrained(tmp_path / "again") == ours


def test_generation_config_checks_and_derivation():
    with pytest.raises(ValueError, match="num_beams"):
        GenerationConfig(num_beams=0)
    with pytest.raises(ValueError, match="task"):
        GenerationConfig(task="summarize")
    bad = {"max_length": -1, "top_p": 2.0, "temperature": "hot", "num_return_sequences": 0, "top_k": -5}
    for key, value in bad.items():
        with pytest.raises(ValueError, match=key):
            GenerationConfig(**{key: value})
    with pytest.raises(ValueError, match="unknown language 'klingon'"):
        GenerationConfig(language="klingon")
    derived = GenerationConfig.from_model_config(WhisperConfig(suppress_tokens=[1, 2]))
    assert derived.suppress_tokens == [1, 2] and derived.begin_suppress_tokens == [220, 50256]
    assert derived.max_length == 448


def test_missing_config_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        WhisperConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        WhisperConfig.from_pretrained(tmp_path)


def test_num_labels_override_replaces_stored_labels(tmp_path):
    WhisperConfig().save_pretrained(tmp_path)  # stores the default two labels
    config = WhisperConfig.from_pretrained(tmp_path, num_labels=3)
    assert config.num_labels == 3 and config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    with pytest.raises(ValueError, match="disagrees"):
        WhisperConfig.from_pretrained(tmp_path, num_labels=3, id2label={0: "a"})


def test_overrides_beat_aliases_stored_in_config_json(tmp_path):
    # config.json written by us or by transformers stores num_hidden_layers beside encoder_layers.
    WhisperConfig(encoder_layers=4, d_model=384, encoder_attention_heads=6).save_pretrained(tmp_path)
    assert WhisperConfig.from_pretrained(tmp_path, encoder_layers=2).encoder_layers == 2
    assert WhisperConfig.from_pretrained(tmp_path, num_hidden_layers=3).encoder_layers == 3
    config = WhisperConfig.from_pretrained(tmp_path, d_model=768, encoder_attention_heads=12)
    assert (config.d_model, config.hidden_size, config.num_attention_heads) == (768, 768, 12)
