"""whisper_tf with the real tiny.en on real speech, against whisper_pt (DESIGN.md §3: 1e-4, identical ids)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import JFK_TEXT
from whisper_core import WhisperProcessor
from whisper_pt import WhisperForConditionalGeneration
from whisper_tf import TFWhisperForConditionalGeneration

pytestmark = pytest.mark.slow
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny(tiny_en_dir, jfk_audio):
    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    features = processor(jfk_audio, sampling_rate=16000, return_tensors="np").input_features
    pt = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir)
    ours = TFWhisperForConditionalGeneration.from_pretrained(tiny_en_dir)  # stored float16, loaded as float32
    return processor, np.asarray(features, np.float32), pt, ours


def test_logits_and_loss_match_whisper_pt(tiny):
    processor, features, pt, ours = tiny
    labels = np.array([processor.tokenizer(JFK_TEXT)["input_ids"]])
    with torch.no_grad():
        theirs = pt(torch.from_numpy(features), labels=torch.from_numpy(labels))
    mine = ours(features, labels=labels)
    assert float(np.abs(mine.encoder_last_hidden_state - theirs.encoder_last_hidden_state.numpy()).max()) <= TOLERANCE
    assert float(np.abs(mine.logits - theirs.logits.numpy()).max()) <= TOLERANCE
    # The reference loss is the float64 cross-entropy of whisper_pt's logits (torch's float32 one is
    # itself ~1e-5 relative off here).
    reference_loss = torch.nn.functional.cross_entropy(theirs.logits[0].double(), torch.from_numpy(labels[0])).item()
    assert abs(float(mine.loss) - reference_loss) <= 1e-5 * reference_loss


@pytest.mark.parametrize("kwargs", [{}, {"return_timestamps": True}, {"num_beams": 2}])
def test_generate_matches_whisper_pt(tiny, kwargs):
    processor, features, pt, ours = tiny
    mine = ours.generate(features, **kwargs).numpy()
    theirs = pt.generate(torch.from_numpy(features), **kwargs).numpy()
    np.testing.assert_array_equal(mine, theirs)
    text = processor.batch_decode(mine, skip_special_tokens=True)[0].strip()
    assert processor.tokenizer.normalize(text) == processor.tokenizer.normalize(JFK_TEXT)
