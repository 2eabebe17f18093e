"""whisper_pt models against transformers 4.57.6 on small random configs (same weights, CPU, float32).

Tolerances (DESIGN.md §3): states, logits, attentions max abs <= 1e-5; loss rel <= 1e-5; gradients
<= 1e-4 of each parameter's largest reference gradient. fp16/bf16 runs are compared with our own
float32 output, within a budget relative to the logits' scale (see ``test_half_precision``).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers.models.whisper import modeling_whisper as hf_whisper  # noqa: E402

from tests.helpers import FRAMES, SMALL, max_abs  # noqa: E402
from whisper_core.config import WhisperConfig  # noqa: E402
from whisper_pt import modeling  # noqa: E402
from whisper_pt.modeling import (  # noqa: E402
    LayerNorm,
    WhisperForAudioClassification,
    WhisperForConditionalGeneration,
    WhisperModel,
    attend,
)

TOL = 1e-5
LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-4


def make_pair(hf_cls, our_cls, attn: str = "sdpa", seed: int = 0, **overrides):
    """A transformers model with random weights and ours loaded from its state dict (strict)."""
    kwargs = {**SMALL, **overrides}
    torch.manual_seed(seed)
    hf = hf_cls(transformers.WhisperConfig(**kwargs, attn_implementation=attn)).eval()
    ours = our_cls(WhisperConfig(**kwargs)).eval()
    ours.load_state_dict(hf.state_dict(), strict=True)
    return hf, ours


@pytest.fixture(scope="module")
def lm_pair():
    return make_pair(transformers.WhisperForConditionalGeneration, WhisperForConditionalGeneration)


@pytest.fixture(scope="module")
def lm_pair_eager():
    return make_pair(transformers.WhisperForConditionalGeneration, WhisperForConditionalGeneration, attn="eager")


@pytest.fixture(scope="module")
def inputs():
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(2, SMALL["num_mel_bins"], FRAMES, generator=gen)
    ids = torch.randint(4, SMALL["vocab_size"], (2, 9), generator=gen)
    return features, ids


# -- names and init ------------------------------------------------------------------------------


def test_state_dict_names_match_transformers(lm_pair):
    hf, ours = lm_pair
    assert list(ours.state_dict()) == list(hf.state_dict())
    assert "model.encoder.layers.0.self_attn.k_proj.bias" not in ours.state_dict()
    assert ours.proj_out.weight is ours.model.decoder.embed_tokens.weight
    for name, ref in hf.state_dict().items():
        assert ours.state_dict()[name].shape == ref.shape, name
    hf_model, our_model = make_pair(transformers.WhisperModel, WhisperModel)
    assert list(our_model.state_dict()) == list(hf_model.state_dict())


def test_init_like_transformers():
    ours = WhisperForConditionalGeneration(WhisperConfig(**SMALL, init_std=0.05))
    positions = ours.model.encoder.embed_positions.weight
    assert max_abs(positions, hf_whisper.sinusoids(*positions.shape)) == 0.0
    assert not positions.requires_grad
    assert abs(ours.model.decoder.layers[0].fc1.weight.std().item() - 0.05) < 0.01
    assert ours.model.decoder.layers[0].fc1.bias.abs().max().item() == 0.0
    assert ours.model.decoder.embed_tokens.weight[SMALL["pad_token_id"]].abs().max().item() == 0.0
    norm = ours.model.encoder.layers[1].final_layer_norm
    assert bool((norm.weight == 1).all()) and bool((norm.bias == 0).all())
    classifier = WhisperForAudioClassification(WhisperConfig(**SMALL, use_weighted_layer_sum=True))
    assert torch.allclose(classifier.layer_weights, torch.full((SMALL["encoder_layers"] + 1,), 1 / 3))


def test_loading_skips_the_random_init_and_leaves_it_to_everyone_else(monkeypatch):
    """``from_canonical`` builds without drawing the random values its weights replace (torch's module
    constructors included); torch's init functions then still draw for every other caller."""
    source = WhisperForConditionalGeneration(WhisperConfig(**SMALL))
    WhisperForConditionalGeneration.from_canonical(source.config, source.canonical_tensors())
    for name in ("kaiming_uniform_", "uniform_", "normal_"):  # what transformers' no_init_weights puts back
        monkeypatch.setattr(torch.nn.init, name, inspect.unwrap(getattr(torch.nn.init, name)))
    drawn = []
    for name in ("uniform_", "normal_"):  # what torch.nn.init's functions call in the end
        monkeypatch.setattr(torch.Tensor, name, _recording(getattr(torch.Tensor, name), drawn))
    loaded = WhisperForConditionalGeneration.from_canonical(source.config, source.canonical_tensors())
    assert drawn == [] and max_abs(loaded.proj_out.weight, source.proj_out.weight) == 0.0
    assert loaded.proj_out.weight is loaded.model.decoder.embed_tokens.weight
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 64)
    assert drawn and 0.05 < linear.weight.std().item() < 0.1  # kaiming uniform's 1 / sqrt(3 * 64)


def _recording(function, calls):
    def record(tensor, *args, **kwargs):
        calls.append(tuple(tensor.shape))
        return function(tensor, *args, **kwargs)

    return record


# -- forward parity ------------------------------------------------------------------------------


def test_forward_matches(lm_pair, inputs):
    hf, ours = lm_pair
    features, ids = inputs
    with torch.no_grad():
        ref = hf(features, decoder_input_ids=ids)
        out = ours(features, decoder_input_ids=ids)
    assert max_abs(out.encoder_last_hidden_state, ref.encoder_last_hidden_state) <= TOL
    assert max_abs(out.logits, ref.logits) <= TOL
    assert out["logits"] is out.logits and out[0] is out.logits  # no loss: logits come first


def test_hidden_states_and_attentions_match(lm_pair_eager, inputs):
    hf, ours = lm_pair_eager
    features, ids = inputs
    flags = dict(output_attentions=True, output_hidden_states=True)
    with torch.no_grad():
        ref = hf(features, decoder_input_ids=ids, **flags)
        out = ours(features, decoder_input_ids=ids, **flags)
    names = ("encoder_hidden_states", "decoder_hidden_states", "encoder_attentions", "decoder_attentions")
    for name in (*names, "cross_attentions"):
        ours_list, ref_list = getattr(out, name), getattr(ref, name)
        assert len(ours_list) == len(ref_list) > 0, name
        for i, (a, b) in enumerate(zip(ours_list, ref_list, strict=True)):
            assert max_abs(a, b) <= TOL, f"{name}[{i}]"
    assert out.cross_attentions[0].shape == (2, SMALL["decoder_attention_heads"], ids.shape[1], FRAMES // 2)
    # return_dict=False gives transformers' tuple layout (cache excluded from the comparison).
    with torch.no_grad():
        ref_t = hf(features, decoder_input_ids=ids, return_dict=False, use_cache=False, **flags)
        out_t = ours(features, decoder_input_ids=ids, return_dict=False, use_cache=False, **flags)
    assert len(out_t) == len(ref_t)
    assert max_abs(out_t[0], ref_t[0]) <= TOL


def test_sdpa_equals_explicit_attention():
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 4, n, 16, generator=gen) for n in (5, 7, 7))
    q = q * 16**-0.5
    mask = torch.rand(2, 1, 5, 7, generator=gen) > 0.3
    mask[..., 0] = True
    for m in (None, mask):
        fused, none = attend(q, k, v, m)
        explicit, weights = attend(q, k, v, m, output_attentions=True)
        assert none is None and weights.shape == (2, 4, 5, 7)
        assert max_abs(fused, explicit) <= TOL


def test_loss_and_gradients_match(lm_pair, inputs):
    hf, ours = lm_pair
    features, labels = inputs
    labels = labels.clone()
    labels[1, -3:] = -100  # padding ignored by the loss (and shifted in as pad_token_id)
    hf.zero_grad()
    ours.zero_grad()
    ref = hf(features, labels=labels)
    out = ours(features, labels=labels)
    assert abs(out.loss.item() - ref.loss.item()) <= LOSS_RTOL * abs(ref.loss.item())
    assert max_abs(out.logits, ref.logits) <= TOL
    ref.loss.backward()
    out.loss.backward()
    ref_params, our_params = dict(hf.named_parameters()), dict(ours.named_parameters())
    assert list(our_params) == list(ref_params)
    compared = 0
    for name, ref_param in ref_params.items():
        ref_grad, our_grad = ref_param.grad, our_params[name].grad
        if ref_grad is None:
            assert our_grad is None, name
            continue
        scale = ref_grad.abs().max().item()
        assert max_abs(our_grad, ref_grad) <= GRAD_RTOL * max(scale, 1e-12), name
        compared += 1
    assert compared == len(ref_params) - 1  # every parameter except the frozen encoder positions
    hf.zero_grad()
    ours.zero_grad()


def test_explicit_decoder_inputs_and_tuple_output(lm_pair, inputs):
    hf, ours = lm_pair
    features, ids = inputs
    with torch.no_grad():
        ref = hf(features, decoder_input_ids=ids[:, :4], labels=ids[:, 1:5], return_dict=False)
        out = ours(features, decoder_input_ids=ids[:, :4], labels=ids[:, 1:5], return_dict=False)
    assert abs(out[0].item() - ref[0].item()) <= LOSS_RTOL * abs(ref[0].item())
    assert max_abs(out[1], ref[1]) <= TOL


def test_encoder_outputs_reuse_and_decoder_inputs_embeds(lm_pair, inputs):
    hf, ours = lm_pair
    features, ids = inputs
    with torch.no_grad():
        ref = hf(features, decoder_input_ids=ids).logits
        encoded = ours.get_encoder()(features)
        from_tuple = ours(encoder_outputs=(encoded.last_hidden_state,), decoder_input_ids=ids).logits
        embeds = ours.get_input_embeddings()(ids)
        from_embeds = ours(encoder_outputs=encoded, decoder_inputs_embeds=embeds).logits
    assert max_abs(from_tuple, ref) <= TOL
    assert max_abs(from_embeds, ref) <= TOL


# -- decoding with the cache ---------------------------------------------------------------------


def test_incremental_decoding_matches_full_forward(lm_pair, inputs):
    hf, ours = lm_pair
    features, ids = inputs
    with torch.no_grad():
        full = hf(features, decoder_input_ids=ids).logits
        encoder_outputs = ours.get_encoder()(features)
        out = ours(encoder_outputs=encoder_outputs, decoder_input_ids=ids[:, :3], use_cache=True)
        steps, cache = [out.logits], out.past_key_values
        first_cross_k = cache[0][2]
        for t in range(3, ids.shape[1]):
            out = ours(encoder_outputs=encoder_outputs, decoder_input_ids=ids[:, t : t + 1], past_key_values=cache)
            steps.append(out.logits)
            cache = out.past_key_values
    assert max_abs(torch.cat(steps, dim=1), full) <= TOL
    assert len(cache) == SMALL["decoder_layers"] and all(len(layer) == 4 for layer in cache)
    head_dim = SMALL["d_model"] // SMALL["decoder_attention_heads"]
    assert cache[0][0].shape == (2, SMALL["decoder_attention_heads"], ids.shape[1], head_dim)
    assert cache[0][2].shape == (2, SMALL["decoder_attention_heads"], FRAMES // 2, head_dim)
    assert cache[0][2] is first_cross_k  # cross-attention k/v computed once, then reused


def test_decoder_position_ids_match(lm_pair, inputs):
    hf, ours = lm_pair
    features, ids = inputs
    positions = (torch.arange(ids.shape[1]) + 5).expand(2, -1)
    with torch.no_grad():
        ref = hf(features, decoder_input_ids=ids, decoder_position_ids=positions).logits
        out = ours(features, decoder_input_ids=ids, decoder_position_ids=positions).logits
        default = ours(features, decoder_input_ids=ids).logits
    assert max_abs(out, ref) <= TOL
    assert max_abs(out, default) > 1e-3  # the positions really are used


def test_decoder_padding_mask_matches(lm_pair, inputs):
    hf, ours = lm_pair
    features, ids = inputs
    mask = torch.ones_like(ids)
    mask[1, -4:] = 0  # right padding
    with torch.no_grad():
        ref = hf(features, decoder_input_ids=ids, decoder_attention_mask=mask).logits
        out = ours(features, decoder_input_ids=ids, decoder_attention_mask=mask).logits
    assert max_abs(out, ref) <= TOL


# -- errors --------------------------------------------------------------------------------------


def test_labels_longer_than_max_target_positions_raise(lm_pair, inputs):
    _, ours = lm_pair
    features, _ = inputs
    labels = torch.ones(2, SMALL["max_target_positions"] + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="cannot exceed the maximum allowed length of 24"):
        ours(features, labels=labels)


def test_wrong_frame_count_and_mel_bins_raise(lm_pair, inputs):
    _, ours = lm_pair
    _, ids = inputs
    with pytest.raises(ValueError, match="to be of length 60, but found 58"):
        ours(torch.zeros(1, SMALL["num_mel_bins"], FRAMES - 2), decoder_input_ids=ids[:1])
    with pytest.raises(ValueError, match=r"shape \(batch, 80, 60\)"):
        ours(torch.zeros(1, 128, FRAMES), decoder_input_ids=ids[:1])


# -- classification ------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("num_labels", [1, 3])
def test_audio_classification_matches(weighted, num_labels, inputs):
    hf, ours = make_pair(
        transformers.WhisperForAudioClassification,
        WhisperForAudioClassification,
        use_weighted_layer_sum=weighted,
        num_labels=num_labels,
    )
    if weighted:  # not the uniform init, so the softmax weighting is exercised
        with torch.no_grad():
            hf.layer_weights.copy_(torch.tensor([0.3, -0.2, 0.5]))
            ours.layer_weights.copy_(hf.layer_weights)
    assert list(ours.state_dict()) == list(hf.state_dict())
    features, _ = inputs
    labels = torch.tensor([0, num_labels - 1]) if num_labels > 1 else torch.tensor([0.5, -1.25])
    ref = hf(features)
    # One label is a regression: mean squared error (transformers' code gives cross-entropy, always 0).
    ref_loss = (
        torch.nn.functional.cross_entropy(ref.logits, labels)
        if num_labels > 1
        else ((ref.logits[:, 0] - labels) ** 2).mean()
    )
    out = ours(features, labels=labels)
    assert out.logits.shape == (2, num_labels)
    assert max_abs(out.logits, ref.logits) <= TOL
    assert out.loss.item() > 0 and abs(out.loss.item() - ref_loss.item()) <= LOSS_RTOL * abs(ref_loss.item())
    ref_loss.backward()
    out.loss.backward()
    for name in ("projector.weight", "classifier.bias", "encoder.layers.0.fc1.weight"):
        ref_grad = dict(hf.named_parameters())[name].grad
        assert max_abs(dict(ours.named_parameters())[name].grad, ref_grad) <= GRAD_RTOL * max(
            ref_grad.abs().max().item(), 1e-12
        ), name


def test_freeze_encoder():
    model = WhisperForConditionalGeneration(WhisperConfig(**SMALL))
    model.freeze_encoder()
    assert not any(p.requires_grad for p in model.get_encoder().parameters())
    assert all(p.requires_grad for p in model.get_decoder().parameters())
    classifier = WhisperForAudioClassification(WhisperConfig(**SMALL))
    classifier.freeze_encoder()
    assert not any(p.requires_grad for p in classifier.encoder.parameters())
    assert classifier.classifier.weight.requires_grad


# -- reduced precision ---------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "budget"), [(torch.float16, 5e-3), (torch.bfloat16, 2.5e-2)])
def test_half_precision(lm_pair, inputs, dtype, budget):
    """fp16/bf16 run end to end; error relative to the float32 logits' scale stays within ``budget``
    (fp16 has 11 significant bits, bf16 8; observed 5e-4 and 4e-3 here, the budgets leave ~6-10x room)."""
    _, ours = lm_pair
    features, ids = inputs
    with torch.no_grad():
        reference = ours(features, decoder_input_ids=ids).logits
        half = WhisperForConditionalGeneration(ours.config).eval()
        half.load_state_dict(ours.state_dict())
        half.to(dtype)
        out = half(features.to(dtype), decoder_input_ids=ids, output_attentions=True)
    assert out.logits.dtype == dtype and out.decoder_attentions[0].dtype == dtype
    assert torch.isfinite(out.logits).all()
    assert max_abs(out.logits.float(), reference) <= budget * reference.abs().max().item()


def test_layer_norm_runs_in_float32(lm_pair, inputs, monkeypatch):
    """Every LayerNorm of a bf16 model normalises float32 tensors and hands back bf16."""
    _, ours = lm_pair
    features, ids = inputs
    seen = []
    layer_norm = torch.nn.functional.layer_norm

    def spy(x, *args, **kwargs):
        seen.append((x.dtype, args[1].dtype))  # input and weight
        return layer_norm(x, *args, **kwargs)

    model = WhisperForConditionalGeneration(ours.config).eval().to(torch.bfloat16)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(isinstance(m, LayerNorm) for m in norms)
    monkeypatch.setattr(torch.nn.functional, "layer_norm", spy)
    with torch.no_grad():
        out = model(features.to(torch.bfloat16), decoder_input_ids=ids)
    assert len(seen) == len(norms)
    assert set(seen) == {(torch.float32, torch.float32)}
    assert out.logits.dtype == torch.bfloat16


# -- training behaviour --------------------------------------------------------------------------


def test_compute_mask_indices_matches_transformers_and_semantics():
    shape, length = (4, FRAMES), 7
    for seed in range(5):
        np.random.seed(seed)
        ours = modeling._compute_mask_indices(shape, mask_prob=0.3, mask_length=length, min_masks=2)
        np.random.seed(seed)
        ref = hf_whisper._compute_mask_indices(shape, mask_prob=0.3, mask_length=length, min_masks=2)
        assert np.array_equal(ours, ref)
        for row in ours:  # every masked run is made of whole spans
            runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]]))))[::2]
            assert len(runs) > 0 and runs.min() >= length
        # at most int(0.3 * 60 / 7 + u) <= 3 spans of 7 frames
        assert ours.sum(axis=1).max() <= 3 * length

    np.random.seed(0)  # mask_prob 0: exactly min_masks spans (possibly overlapping)
    mins = modeling._compute_mask_indices(shape, mask_prob=0.0, mask_length=5, min_masks=2)
    assert ((mins.sum(axis=1) >= 5) & (mins.sum(axis=1) <= 10)).all()
    assert not modeling._compute_mask_indices(shape, mask_prob=0.0, mask_length=5, min_masks=0).any()

    lengths = torch.zeros(3, FRAMES, dtype=torch.long)
    lengths[0, :FRAMES] = 1
    lengths[1, :30] = 1  # a short row: spans stay inside its 30 real frames
    lengths[2, :3] = 1  # shorter than a span: no span; transformers then marks the last (padding) frame
    np.random.seed(3)
    padded = modeling._compute_mask_indices((3, FRAMES), 0.5, 5, attention_mask=lengths, min_masks=1)
    np.random.seed(3)
    assert np.array_equal(padded, hf_whisper._compute_mask_indices((3, FRAMES), 0.5, 5, lengths, 1))
    assert not padded[1, 30:].any() and padded[1, :30].any()
    assert padded[2].sum() == 1 and padded[2, -1]
    with pytest.raises(ValueError):
        modeling._compute_mask_indices((1, 4), 0.5, 5)


def test_spec_augment_in_training_matches_transformers(inputs):
    overrides = dict(apply_spec_augment=True, mask_time_prob=0.2, mask_time_length=6, mask_feature_prob=0.2)
    hf, ours = make_pair(transformers.WhisperModel, WhisperModel, **overrides, mask_feature_length=8)
    features, ids = inputs
    hf.train()
    ours.train()
    kept = features.clone()
    with torch.no_grad():
        np.random.seed(7)
        ref = hf(features.clone(), decoder_input_ids=ids).encoder_last_hidden_state
        np.random.seed(7)
        out = ours(features, decoder_input_ids=ids).encoder_last_hidden_state
        masked = ours._mask_input_features(features)
    assert torch.equal(features, kept)  # the caller's features are not modified
    assert max_abs(out, ref) <= TOL
    zero_frames = (masked == 0).all(dim=1)  # [b, frames]
    zero_bins = (masked == 0).all(dim=2)  # [b, bins]
    assert zero_frames.any(dim=1).all() and zero_bins.any(dim=1).all()
    ours.eval()
    assert torch.equal(ours._mask_input_features(features), features)  # never in eval
    ours.train()
    ours.config.apply_spec_augment = False
    assert torch.equal(ours._mask_input_features(features), features)


def test_layerdrop_in_training_matches_transformers(inputs):
    hf, ours = make_pair(
        transformers.WhisperForConditionalGeneration,
        WhisperForConditionalGeneration,
        encoder_layers=4,
        decoder_layers=4,
        encoder_layerdrop=0.5,
        decoder_layerdrop=0.5,
    )
    features, ids = inputs
    hf.train()
    ours.train()
    with torch.no_grad():
        results = []
        for seed in range(3):
            torch.manual_seed(seed)
            ref = hf(features, decoder_input_ids=ids, use_cache=False).logits
            torch.manual_seed(seed)
            out = ours(features, decoder_input_ids=ids, use_cache=False).logits
            assert max_abs(out, ref) <= TOL
            results.append(out)
        ours.eval()
        full = ours(features, decoder_input_ids=ids).logits
    assert max(max_abs(r, full) for r in results) > 1e-3  # some layer really was dropped

    encoder = ours.get_encoder().train()
    encoder.layerdrop = 1.0  # every layer dropped: the final norm of the embedded input
    with torch.no_grad():
        out = encoder(features).last_hidden_state
        x = torch.nn.functional.gelu(encoder.conv2(torch.nn.functional.gelu(encoder.conv1(features))))
        expected = encoder.layer_norm(x.permute(0, 2, 1) + encoder.embed_positions.weight)
    assert max_abs(out, expected) <= TOL


def test_head_masks_match_transformers(inputs):
    """``head_mask``, ``decoder_head_mask`` and ``cross_attn_head_mask`` silence or scale heads per layer."""
    hf, ours = make_pair(transformers.WhisperForConditionalGeneration, WhisperForConditionalGeneration, attn="eager")
    features, ids = inputs
    layers, heads = SMALL["encoder_layers"], SMALL["encoder_attention_heads"]
    masks = {
        name: torch.rand(layers, heads, generator=torch.Generator().manual_seed(seed)).round()
        for seed, name in enumerate(("head_mask", "decoder_head_mask", "cross_attn_head_mask"))
    }
    masks["head_mask"][0, 0] = 0.0  # at least one silenced head
    kwargs = dict(decoder_input_ids=ids, output_attentions=True, **masks)
    with torch.no_grad():
        mine, theirs = ours(features, **kwargs), hf(features, **kwargs)
        plain = ours(features, decoder_input_ids=ids)
    assert max_abs(mine.logits, theirs.logits) <= TOL
    assert max_abs(mine.logits, plain.logits) > 1e-3, "the masks change the output"
    assert float(mine.encoder_attentions[0][:, 0].abs().max()) == 0.0
    with pytest.raises(ValueError, match="one per layer"):
        ours(features, decoder_input_ids=ids, head_mask=torch.ones(layers + 1, heads))
