"""whisper_pt's static-cache decode step (eager and compiled) against the model's plain forward pass.

Each step's logits must equal (DESIGN.md §3: 1e-5 on random configs, 1e-4 on real weights) the last
position of a plain, cache-free forward pass over the whole sequence so far, with left-padded rows and
after the cache rows are reordered as beam search does.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from tests.helpers import max_abs, whisper_like_pt_model
from weights_bridge import quantization
from whisper_pt import WhisperForConditionalGeneration
from whisper_pt.generation import (
    COMPILE_VARIABLE,
    _onednn_linear_works,
    forget_step_weights,
    step_weights,
    use_compiled_step,
)
from whisper_pt.int8 import Int8Linear

PAD = 50  # WHISPER_LIKE's pad (= eos) token
CAPACITY = 20  # cache positions for the eager steps: a prefix of 6 and up to 14 steps


def plain_last_logits(model, states: torch.Tensor, sequences: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """``[rows, vocab]`` logits of the last token: the forward pass without a cache, rows left-padded."""
    columns = torch.arange(sequences.shape[1])[None, :]
    out = model(
        encoder_outputs=(states,),
        decoder_input_ids=sequences,
        decoder_attention_mask=(columns >= padding[:, None]).long(),
        decoder_position_ids=(columns - padding[:, None]).clamp(min=0),
        use_cache=False,
    )
    return out.logits[:, -1]


def step_against_plain(
    model,
    states,
    prefix,
    padding,
    steps: int,
    reorder_at: int,
    order: torch.Tensor,
    reorder_cache: bool = True,
    copies: int = 1,
) -> tuple[float, bool]:
    """Steps through the static cache, the rows reordered by ``order`` before step ``reorder_at`` (as
    beam search does: only among rows of the same input and padding): ``(largest logit difference to
    the plain forward pass, whether every step's greedy token is the plain pass's)``. With ``copies``,
    the prefix pass runs over every ``copies``-th row and its cache serves that many rows per input."""
    inputs = slice(None, None, copies)
    with torch.inference_mode():
        hidden, cache = model._decode_prefix(states[inputs], prefix[inputs], padding[inputs], CAPACITY, copies)
        step = model._step_function(cache)
        sequences, last = prefix, model.proj_out(hidden[:, -1]).repeat_interleave(copies, dim=0)
        worst, same_ids = max_abs(last, plain_last_logits(model, states, prefix, padding)), True
        for index in range(steps):
            sequences = torch.cat([sequences, _distinct_picks(last)], dim=1)
            if index == reorder_at:
                if reorder_cache:
                    cache.reorder(order, sequences.shape[1] - 1)
                sequences = sequences[order]
            last = step(sequences[:, -1], sequences.shape[1] - 1)
            plain = plain_last_logits(model, states, sequences, padding)
            worst = max(worst, max_abs(last, plain))
            same_ids = same_ids and torch.equal(last.argmax(dim=-1), plain.argmax(dim=-1))
    return worst, same_ids


def _distinct_picks(logits: torch.Tensor) -> torch.Tensor:
    """``[rows, 1]``: row ``i`` takes its ``i``-th most likely token, so that rows of the same input
    (beams) differ and a reorder of the cache matters."""
    rows = torch.arange(logits.shape[0])
    return logits.topk(logits.shape[0], dim=-1).indices[rows, rows][:, None]


def stepped_last_logits(model, states, prefix, padding, steps: int) -> torch.Tensor:
    """``[steps, rows, vocab]``: the static-cache step's logits after the prefix pass, fed the tokens
    :func:`_distinct_picks` chooses (compare with :func:`cached_forward_last_logits`)."""
    with torch.inference_mode():
        hidden, cache = model._decode_prefix(states, prefix, padding, CAPACITY)
        step, tokens, found = model._step_function(cache), prefix, []
        last = model.proj_out(hidden[:, -1])
        for _ in range(steps):
            tokens = torch.cat([tokens, _distinct_picks(last)], dim=1)
            last = step(tokens[:, -1], tokens.shape[1] - 1)
            found.append(last)
    return torch.stack(found)


def cached_forward_last_logits(model, states, prefix, padding, steps: int) -> torch.Tensor:
    """``[steps, rows, vocab]``: the model's own forward pass with its growing tuple cache (the loop
    ``generate`` ran before the static cache), fed the tokens :func:`_distinct_picks` chooses."""
    columns = torch.arange(prefix.shape[1] + steps)[None, :]
    attention_mask = (columns >= padding[:, None]).long()
    positions = (columns - padding[:, None]).clamp(min=0)
    begin, found = prefix.shape[1], []
    with torch.inference_mode():
        out = model(
            encoder_outputs=(states,),
            decoder_input_ids=prefix,
            decoder_attention_mask=attention_mask[:, :begin],
            decoder_position_ids=positions[:, :begin],
            use_cache=True,
        )
        for end in range(begin + 1, begin + steps + 1):
            out = model(
                encoder_outputs=(states,),
                decoder_input_ids=_distinct_picks(out.logits[:, -1]),
                past_key_values=out.past_key_values,
                decoder_attention_mask=attention_mask[:, :end],
                decoder_position_ids=positions[:, end - 1 : end],
                use_cache=True,
            )
            found.append(out.logits[:, -1])
    return torch.stack(found)


@pytest.fixture(scope="module")
def model():
    """Weights at gain 1 (logits of order 1). At the generation tests' gain 2 logits reach ~6, and the
    old growing cache as well as this one differ from the plain pass by ~1e-5 in float32 rounding."""
    model = whisper_like_pt_model(gain=1.0)
    model.torch_compile = False
    return model


@pytest.fixture(scope="module")
def padded_rows():
    """``(states [4, 30, 64], prefix [4, 6], padding [4])``: two inputs, two rows (beams) each; the first
    input's prompt is shorter, so its rows are left-padded by 2."""
    states = torch.randn(2, 30, 64, generator=torch.Generator().manual_seed(2)).repeat_interleave(2, dim=0)
    prefix = torch.tensor([[PAD, PAD, 51, 52, 57, 61]] * 2 + [[59, 10, 51, 54, 57, 61]] * 2)
    return states, prefix, torch.tensor([2, 2, 0, 0])


@pytest.mark.parametrize("copies", [1, 2])
def test_static_steps_match_the_plain_forward_pass(model, padded_rows, copies):
    """Also when each input's two rows share one prefix pass and one copy of its cross-attention keys/values."""
    order = torch.tensor([1, 1, 3, 2])  # beams: row 0 follows row 1, rows 2 and 3 swap
    worst, same_ids = step_against_plain(model, *padded_rows, steps=8, reorder_at=3, order=order, copies=copies)
    assert worst <= 1e-5
    assert same_ids


def test_a_single_row_steps_like_the_plain_forward_pass(model, padded_rows):
    """One row (sequential decoding) projects onto the vocabulary through oneDNN on the weight as it is,
    not the packed copies that several rows use."""
    states, prefix, padding = (x[2:3] for x in padded_rows)
    worst, same_ids = step_against_plain(model, states, prefix, padding, steps=8, reorder_at=-1, order=None)
    assert worst <= 1e-5
    assert same_ids


def test_packed_weights_follow_the_weights_and_stay_out_of_the_model(padded_rows):
    """Steps of several rows run on oneDNN-packed copies of the decoder's weights: after an in-place update
    of a weight (as an optimizer step makes) the steps still match the plain forward pass, and a model that
    has decoded can still be deep-copied and saved whole (the packed copies are not in it)."""
    model = whisper_like_pt_model(gain=1.0)
    model.torch_compile = False
    order = torch.tensor([1, 1, 3, 2])
    assert step_against_plain(model, *padded_rows, steps=3, reorder_at=1, order=order)[0] <= 1e-5
    with torch.no_grad():
        model.model.decoder.layers[0].fc1.weight.mul_(1.5)
        model.model.decoder.layers[0].self_attn.k_proj.weight.mul_(2.0)
        model.proj_out.weight.mul_(0.5)  # tied: the token embedding changes with it
    assert step_against_plain(model, *padded_rows, steps=3, reorder_at=1, order=order)[0] <= 1e-5
    copied = copy.deepcopy(model)
    assert step_against_plain(copied, *padded_rows, steps=3, reorder_at=1, order=order)[0] <= 1e-5
    torch.save(model, io.BytesIO())


def test_the_comparison_sees_a_cache_left_unordered(model, padded_rows):
    """The check above can fail: steps over a cache whose rows were not reordered give other logits."""
    order = torch.tensor([1, 1, 3, 2])
    worst, _ = step_against_plain(model, *padded_rows, steps=4, reorder_at=1, order=order, reorder_cache=False)
    assert worst > 1e-3


def _with_int8_linears(model: torch.nn.Module) -> torch.nn.Module:
    """Every plain Linear of ``model`` swapped for the :class:`Int8Linear` of its weight (the bridge's int8)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                int8 = quantization.quantize(child.weight.detach().numpy())
                values, scales = torch.from_numpy(int8.values), torch.from_numpy(int8.scales)
                setattr(parent, name, Int8Linear(values, scales, child.bias))
    return model


def test_int8_modules_decode_eagerly_like_the_cached_forward_pass(padded_rows):
    """``compute_type="int8"`` modules are not plain ``nn.Linear``: the step calls them as they are, eagerly
    (never compiled), and gives the logits of the model's own cached forward pass."""
    quantized = _with_int8_linears(whisper_like_pt_model(gain=1.0))
    quantized.torch_compile = True
    states, prefix, padding = padded_rows
    assert not use_compiled_step(quantized)
    found = stepped_last_logits(quantized, states, prefix, padding, 4)
    assert max_abs(found, cached_forward_last_logits(quantized, states, prefix, padding, 4)) <= 1e-5


def test_writes_through_data_need_forget_step_weights(padded_rows):
    """A write through ``tensor.data`` leaves torch's version counter alone, so steps of several rows keep
    multiplying by their packed copy of the old weight until :func:`forget_step_weights` drops it."""
    if not _onednn_linear_works():
        pytest.skip("no oneDNN in this torch build: no packed copies to go stale")
    model = whisper_like_pt_model(gain=1.0)
    model.torch_compile = False
    order = torch.tensor([1, 1, 3, 2])
    assert step_against_plain(model, *padded_rows, steps=3, reorder_at=1, order=order)[0] <= 1e-5
    model.model.decoder.layers[0].fc1.weight.data.mul_(1.5)
    assert step_against_plain(model, *padded_rows, steps=3, reorder_at=1, order=order)[0] > 1e-3
    forget_step_weights(model)
    assert step_against_plain(model, *padded_rows, steps=3, reorder_at=1, order=order)[0] <= 1e-5


def test_int8_self_attention_projects_query_key_value_in_one_product():
    """An int8 step quantizes each self-attention's input once, for one product giving query, key and value
    (the int8 test above steps through it). That product follows its weights, a projection of another kind
    (a LoRA-like wrapper) leaves its layer's three products apart, and float32 layers are never fused."""
    quantized = _with_int8_linears(whisper_like_pt_model(gain=1.0))
    layers, width = quantized.model.decoder.layers, quantized.config.d_model
    fused = step_weights(quantized, rows=1).query_key_value
    assert set(fused) == {layer.self_attn for layer in layers}
    assert all(m.out_features == 3 * width for m in fused.values())
    assert step_weights(quantized, rows=3).query_key_value is fused  # one fused copy for every row count
    attention = layers[0].self_attn
    with torch.no_grad():
        attention.v_proj.weight_scales.mul_(2.0)
    refreshed = step_weights(quantized, rows=1).query_key_value[attention]
    assert torch.equal(refreshed.weight_scales[2 * width :], attention.v_proj.weight_scales)
    attention.v_proj = torch.nn.Sequential(attention.v_proj)
    assert set(step_weights(quantized, rows=1).query_key_value) == {layer.self_attn for layer in layers[1:]}
    assert step_weights(whisper_like_pt_model(), rows=1).query_key_value == {}


def test_switch_reads_the_attribute_then_the_environment(monkeypatch):
    fresh = whisper_like_pt_model()
    monkeypatch.setenv(COMPILE_VARIABLE, "1")
    assert use_compiled_step(fresh)
    fresh.torch_compile = False
    assert not use_compiled_step(fresh)
    monkeypatch.setenv(COMPILE_VARIABLE, "0")
    fresh.torch_compile = None
    assert not use_compiled_step(fresh)
    monkeypatch.setenv(COMPILE_VARIABLE, "1")
    assert not use_compiled_step(fresh.half())


@pytest.mark.parametrize("copies", [1, 2])
def test_real_tiny_en_steps_match_the_plain_forward_pass(tiny_en_dir, jfk_audio, copies):
    """Each input's two rows (beams) decoding through their own cache rows, or sharing one prefix pass and
    one copy of the cross-attention keys/values."""
    from whisper_core import WhisperProcessor

    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    features = processor(jfk_audio, sampling_rate=16000, return_tensors="pt").input_features
    real = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir).eval()
    real.torch_compile = False
    with torch.inference_mode():
        states = real.model.encoder(features).last_hidden_state.repeat(4, 1, 1)
    sot, no_timestamps, previous, eos = 50257, 50362, 50360, 50256
    prompt = [previous, 843, 523, 616, 3148]  # <|startofprev|> and a prompt: the second input's rows
    prefix = torch.tensor([[eos] * 4 + [sot, no_timestamps]] * 2 + [[*prompt[:4], sot, no_timestamps]] * 2)
    padding = torch.tensor([4, 4, 0, 0])
    order = torch.tensor([1, 0, 2, 2])
    worst, same_ids = step_against_plain(
        real, states, prefix, padding, steps=8, reorder_at=2, order=order, copies=copies
    )
    assert worst <= 1e-4
    assert same_ids


def test_real_tiny_en_int8_steps_alike_with_and_without_the_fused_product(tiny_en_dir, jfk_audio, monkeypatch):
    """tiny.en in int8 on jfk, two rows: the steps through one query/key/value product per self-attention
    give the logits, to the bit, of the steps through the three products apart (the query's scaling folded
    into the fused scales is a power of two), and the same greedy tokens as the plain int8 forward pass.
    (int8 logits are not compared with the plain pass to 1e-4: a rounding apart in attention moves a
    quantized input by one step, 0.77 in tiny.en's logits here, with the three products apart too.)"""
    from whisper_core import WhisperProcessor
    from whisper_pt import generation

    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    features = processor(jfk_audio, sampling_rate=16000, return_tensors="pt").input_features
    quantized = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir, compute_type="int8").eval()
    attentions = {layer.self_attn for layer in quantized.model.decoder.layers}
    assert set(step_weights(quantized, rows=2).query_key_value) == attentions
    with torch.inference_mode():
        states = quantized.model.encoder(features).last_hidden_state.repeat(2, 1, 1)
    prefix = torch.tensor([[50257, 50362]] * 2)  # <|startoftranscript|><|notimestamps|>
    padding = torch.tensor([0, 0])
    _, same_ids = step_against_plain(quantized, states, prefix, padding, steps=8, reorder_at=-1, order=None)
    assert same_ids

    fused = stepped_last_logits(quantized, states, prefix, padding, 8)
    monkeypatch.setattr(generation, "_fused_query_key_value", lambda attention: None)
    forget_step_weights(quantized)
    assert step_weights(quantized, rows=2).query_key_value == {}
    assert torch.equal(fused, stepped_last_logits(quantized, states, prefix, padding, 8))


def test_compiled_step_matches_the_eager_one(padded_rows):
    """The one test that compiles (a small config): the compiled step's logits and the generated beams."""
    compiled = whisper_like_pt_model(gain=1.0)
    compiled.torch_compile = True
    eager = whisper_like_pt_model(gain=1.0)
    eager.torch_compile = False
    states, prefix, padding = padded_rows
    torch._dynamo.reset()  # whatever compiled before in this process does not count towards its limit
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    with torch.inference_mode():
        _, cache = compiled._decode_prefix(states, prefix, padding, CAPACITY)
    assert use_compiled_step(compiled)
    assert cache.self_k[0].shape[2] == compiled.config.max_target_positions  # fixed shapes when compiled
    order = torch.tensor([1, 1, 3, 2])
    worst, same_ids = step_against_plain(compiled, states, prefix, padding, steps=6, reorder_at=2, order=order)
    assert worst <= 1e-5
    assert same_ids
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs, "the step did not compile"
    assert not getattr(compiled, "_torch_compile_failed", False)
    kwargs = dict(encoder_outputs=(states[::2],), language="en", num_beams=2, max_new_tokens=10)  # 4 rows again
    np.testing.assert_array_equal(compiled.generate(**kwargs).numpy(), eager.generate(**kwargs).numpy())
