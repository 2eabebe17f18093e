"""Live models moved between PyTorch and Flax in memory: bit-identical weights, same outputs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import SMALL_NARROW, assert_same_weights
from whisper_core import WhisperConfig
from whisper_mb import backend_of, convert, to_flax, to_pt


@pytest.mark.parametrize("kind", ["WhisperModel", "WhisperForConditionalGeneration", "WhisperForAudioClassification"])
def test_pt_to_flax_and_back_is_exact(kind):
    import torch

    import whisper_pt

    torch.manual_seed(0)
    model = getattr(whisper_pt, kind)(WhisperConfig(**SMALL_NARROW)).eval()
    flax_model = to_flax(model)
    assert type(flax_model).__name__ == "Flax" + kind and backend_of(flax_model) == "flax"
    assert_same_weights(flax_model.canonical_tensors(), model.canonical_tensors())
    back = to_pt(flax_model)
    assert type(back).__name__ == kind
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_outputs_agree_after_moving():
    import torch

    from whisper_pt import WhisperForConditionalGeneration

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(**SMALL_NARROW)).eval()
    features = np.random.default_rng(0).standard_normal((1, 80, 60)).astype(np.float32)
    tokens = np.array([[1, 5, 6, 7]])
    flax_model = convert(model, "flax")
    with torch.no_grad():
        expected = model(torch.from_numpy(features), decoder_input_ids=torch.from_numpy(tokens)).logits.numpy()
    actual = np.asarray(flax_model(features, decoder_input_ids=tokens).logits)
    assert np.abs(actual - expected).max() <= 1e-5


def test_bad_targets():
    from whisper_pt import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(WhisperConfig(**SMALL_NARROW))
    with pytest.raises(ValueError, match="unknown backend"):
        convert(model, "mxnet")
    with pytest.raises(TypeError, match="not a whisper-multibackend model"):
        convert(object(), "pt")
