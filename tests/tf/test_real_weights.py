"""whisper_tf with the real tiny.en on real speech, against whisper_pt (DESIGN.md §3: 1e-4, identical ids)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import JFK_TEXT
from tests.helpers import assert_logits_and_loss_match_pt, real_tiny_en_on_jfk
from whisper_tf import TFWhisperForConditionalGeneration

pytestmark = pytest.mark.slow
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny(tiny_en_dir, jfk_audio):
    return real_tiny_en_on_jfk(tiny_en_dir, jfk_audio, TFWhisperForConditionalGeneration)


def test_logits_and_loss_match_whisper_pt(tiny):
    assert_logits_and_loss_match_pt(*tiny, TOLERANCE)


@pytest.mark.parametrize("kwargs", [{}, {"return_timestamps": True}, {"num_beams": 2}])
def test_generate_matches_whisper_pt(tiny, kwargs):
    processor, features, pt, ours = tiny
    mine = ours.generate(features, **kwargs).numpy()
    theirs = pt.generate(torch.from_numpy(features), **kwargs).numpy()
    np.testing.assert_array_equal(mine, theirs)
    text = processor.batch_decode(mine, skip_special_tokens=True)[0].strip()
    assert processor.tokenizer.normalize(text) == processor.tokenizer.normalize(JFK_TEXT)
