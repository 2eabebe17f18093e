"""WhisperProcessor on real speech and the real tokenizer, against transformers 4.57.6."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import JFK_TEXT
from whisper_core import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer


@pytest.fixture(scope="module")
def processor_dir(tmp_path_factory, tiny_en_tokenizer_dir):
    directory = tmp_path_factory.mktemp("processor")
    WhisperProcessor(
        WhisperFeatureExtractor(), WhisperTokenizer.from_pretrained(tiny_en_tokenizer_dir)
    ).save_pretrained(directory)
    return directory


def test_audio_and_text_match_transformers(processor_dir, jfk_audio):
    from transformers import WhisperProcessor as Reference

    ours = WhisperProcessor.from_pretrained(processor_dir)
    theirs = Reference.from_pretrained(processor_dir)
    mine = ours(jfk_audio, text=JFK_TEXT, sampling_rate=16000)
    reference = theirs(jfk_audio, text=JFK_TEXT, sampling_rate=16000)
    assert np.abs(mine["input_features"] - reference["input_features"]).max() <= 1e-4
    assert mine["labels"] == reference["labels"]
    assert ours.decode(mine["labels"], skip_special_tokens=True) == JFK_TEXT
    assert ours(text=JFK_TEXT)["input_ids"] == theirs(text=JFK_TEXT)["input_ids"]
    assert ours.batch_decode([mine["labels"]]) == theirs.batch_decode([reference["labels"]])
    assert ours.get_decoder_prompt_ids(language="en", task="transcribe") == theirs.get_decoder_prompt_ids(
        language="en", task="transcribe"
    )


def test_batch_with_labels_as_tensors(processor_dir, synthesized_speech):
    from whisper_core import load_audio

    processor = WhisperProcessor.from_pretrained(processor_dir)
    clips = [load_audio(path) for path in list(synthesized_speech.values())[:2]]
    batch = processor(clips, text=["first text", "a longer second text here"], sampling_rate=16000, return_tensors="pt")
    assert tuple(batch["input_features"].shape) == (2, 80, 3000)
    assert batch["labels"].shape[0] == 2


def test_needs_some_input(processor_dir):
    with pytest.raises(ValueError, match="audio, text, or both"):
        WhisperProcessor.from_pretrained(processor_dir)()
