"""Live models moved between PyTorch and Flax in memory: bit-identical weights, same outputs."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_core import WhisperConfig
from whisper_mb import backend_of, convert, to_flax, to_pt

SMALL = dict(
    vocab_size=96, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
    decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=30,
    max_target_positions=20, decoder_start_token_id=1, pad_token_id=0, bos_token_id=0, eos_token_id=0,
)  # fmt: skip


def assert_same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name


@pytest.mark.parametrize("kind", ["WhisperModel", "WhisperForConditionalGeneration", "WhisperForAudioClassification"])
def test_pt_to_flax_and_back_is_exact(kind):
    import torch

    import whisper_pt

    torch.manual_seed(0)
    model = getattr(whisper_pt, kind)(WhisperConfig(**SMALL)).eval()
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
    model = WhisperForConditionalGeneration(WhisperConfig(**SMALL)).eval()
    features = np.random.default_rng(0).standard_normal((1, 80, 60)).astype(np.float32)
    tokens = np.array([[1, 5, 6, 7]])
    flax_model = convert(model, "flax")
    with torch.no_grad():
        expected = model(torch.from_numpy(features), decoder_input_ids=torch.from_numpy(tokens)).logits.numpy()
    actual = np.asarray(flax_model(features, decoder_input_ids=tokens).logits)
    assert np.abs(actual - expected).max() <= 1e-5


def test_bad_targets():
    from whisper_pt import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(WhisperConfig(**SMALL))
    with pytest.raises(ValueError, match="unknown backend"):
        convert(model, "mxnet")
    with pytest.raises(TypeError, match="not a whisper-multibackend model"):
        convert(object(), "pt")
