"""whisper_flax with the real tiny.en on real speech, against whisper_pt (DESIGN.md §3: 1e-4, identical ids)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import JFK_TEXT
from whisper_core import WhisperProcessor
from whisper_flax import FlaxWhisperForConditionalGeneration
from whisper_pt import WhisperForConditionalGeneration

pytestmark = pytest.mark.slow
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny(tiny_en_dir, jfk_audio):
    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    features = processor(jfk_audio, sampling_rate=16000, return_tensors="np").input_features
    pt = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir)
    ours = FlaxWhisperForConditionalGeneration.from_pretrained(tiny_en_dir)  # stored float16, loaded as float32
    return processor, np.asarray(features, np.float32), pt, ours


def test_logits_and_loss_match_whisper_pt(tiny):
    processor, features, pt, ours = tiny
    labels = np.array([processor.tokenizer(JFK_TEXT)["input_ids"]])
    with torch.no_grad():
        theirs = pt(torch.from_numpy(features), labels=torch.from_numpy(labels))
    mine = ours(features, labels=labels)
    assert float(np.abs(mine.encoder_last_hidden_state - theirs.encoder_last_hidden_state.numpy()).max()) <= TOLERANCE
    assert float(np.abs(mine.logits - theirs.logits.numpy()).max()) <= TOLERANCE
    # torch's float32 cross-entropy is itself 1.4e-5 (relative) off here, so the reference loss is the
    # float64 cross-entropy of whisper_pt's logits.
    reference_loss = torch.nn.functional.cross_entropy(theirs.logits[0].double(), torch.from_numpy(labels[0])).item()
    assert abs(float(mine.loss) - reference_loss) <= 1e-5 * reference_loss


def test_greedy_generate_matches_whisper_pt_and_compiles_once(tiny):
    processor, features, pt, ours = tiny
    mine = np.asarray(ours.generate(features, max_new_tokens=40))
    theirs = pt.generate(torch.from_numpy(features), max_new_tokens=40).numpy()
    np.testing.assert_array_equal(mine, theirs)
    text = processor.batch_decode(mine, skip_special_tokens=True)[0].strip()
    assert processor.tokenizer.normalize(text) == processor.tokenizer.normalize(JFK_TEXT)
    traces = ours._loop_traces
    np.testing.assert_array_equal(np.asarray(ours.generate(features, max_new_tokens=40)), mine)
    assert ours._loop_traces == traces


@pytest.mark.parametrize("kwargs", [{"num_beams": 5}, {"return_timestamps": True}])
def test_beam_and_timestamps_match_whisper_pt(tiny, kwargs):
    processor, features, pt, ours = tiny
    mine = np.asarray(ours.generate(features, max_new_tokens=40, **kwargs))
    theirs = pt.generate(torch.from_numpy(features), max_new_tokens=40, **kwargs).numpy()
    np.testing.assert_array_equal(mine, theirs)
    text = processor.batch_decode(mine, skip_special_tokens=True)[0].strip()
    assert processor.tokenizer.normalize(text) == processor.tokenizer.normalize(JFK_TEXT)
