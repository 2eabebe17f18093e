"""whisper_flax with the real tiny.en on real speech, against whisper_pt (DESIGN.md §3: 1e-4, identical ids)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import JFK_TEXT
from tests.helpers import assert_logits_and_loss_match_pt, real_tiny_en_on_jfk
from whisper_flax import FlaxWhisperForConditionalGeneration

pytestmark = pytest.mark.slow
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny(tiny_en_dir, jfk_audio):
    return real_tiny_en_on_jfk(tiny_en_dir, jfk_audio, FlaxWhisperForConditionalGeneration)


def test_logits_and_loss_match_whisper_pt(tiny):
    assert_logits_and_loss_match_pt(*tiny, TOLERANCE)


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
