"""The shared decoding rules (NumPy reference) against transformers 4.57.6's PyTorch logits processors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_core import GenerationConfig
from whisper_core.decoding import LogitRules, NumpyOps, PrefixIds, decoder_prefix, prompt_tokens

VOCAB, EOS, NO_TIMESTAMPS = 80, 30, 39  # timestamps are 40..79
TIMESTAMP_BEGIN = NO_TIMESTAMPS + 1
SUPPRESS = (1, 2, 7, 35)
BEGIN_SUPPRESS = (5, EOS)


def reference_processors(begin: int, timestamps: bool, max_initial: int):
    from transformers import GenerationConfig as ReferenceConfig
    from transformers.generation.logits_process import (
        SuppressTokensAtBeginLogitsProcessor,
        SuppressTokensLogitsProcessor,
        WhisperTimeStampLogitsProcessor,
    )

    processors = [SuppressTokensAtBeginLogitsProcessor(BEGIN_SUPPRESS, begin), SuppressTokensLogitsProcessor(SUPPRESS)]
    if timestamps:
        config = ReferenceConfig(
            eos_token_id=EOS, no_timestamps_token_id=NO_TIMESTAMPS, max_initial_timestamp_index=max_initial
        )
        processors.append(WhisperTimeStampLogitsProcessor(config, begin_index=begin))
    return processors


def history(draw_tokens: list[int], begin: int) -> np.ndarray:
    return np.asarray([[3] * begin + draw_tokens], dtype=np.int64)


token = st.one_of(st.integers(8, EOS - 1), st.integers(TIMESTAMP_BEGIN, VOCAB - 1), st.just(EOS))


@settings(max_examples=400, deadline=None)
@given(
    rows=st.lists(st.lists(token, min_size=0, max_size=8), min_size=1, max_size=3),
    begin=st.integers(1, 4),
    timestamps=st.booleans(),
    max_initial=st.sampled_from([0, 3, 50]),
    seed=st.integers(0, 2**31 - 1),
    spare=st.integers(0, 3),
)
def test_rules_match_transformers_processors(rows, begin, timestamps, max_initial, seed, spare):
    import torch

    length = begin + len(rows[0])
    rows = [(row + rows[0])[: len(rows[0])] for row in rows]  # equal lengths across the batch
    tokens = np.concatenate([history(row, begin) for row in rows])
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(rows), VOCAB)).astype(np.float32) * 3
    # Sometimes make timestamps collectively likely, to exercise the "force a timestamp" rule.
    logits[:, TIMESTAMP_BEGIN:] += rng.choice([0.0, 2.0])

    expected = torch.from_numpy(logits.copy())
    for processor in reference_processors(begin, timestamps, max_initial):
        expected = processor(torch.from_numpy(tokens), expected)

    rules = LogitRules(VOCAB, EOS, NO_TIMESTAMPS, SUPPRESS, BEGIN_SUPPRESS, timestamps, max_initial)
    buffer = np.concatenate([tokens, np.full((len(rows), spare), 77, np.int64)], axis=1)  # unused capacity
    ours = rules.apply(NumpyOps(), logits, buffer, length, begin)
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(expected.numpy()), err_msg=f"{tokens}")
    finite = np.isfinite(ours)
    np.testing.assert_array_equal(ours[finite], expected.numpy()[finite])


def test_rules_under_torch_ops_match_numpy():
    """The same rules, given PyTorch tensors through a minimal torch ops object, agree with NumPy."""
    import torch

    from whisper_pt.generation import TorchOps

    rng = np.random.default_rng(0)
    rules = LogitRules(VOCAB, EOS, NO_TIMESTAMPS, SUPPRESS, BEGIN_SUPPRESS, True, 50)
    tokens = np.asarray(
        [
            [3, 3, TIMESTAMP_BEGIN, 10, 11, TIMESTAMP_BEGIN + 5],
            [3, 3, TIMESTAMP_BEGIN + 2, 12, TIMESTAMP_BEGIN + 4, TIMESTAMP_BEGIN + 4],
        ]
    )
    logits = rng.normal(size=(2, VOCAB)).astype(np.float32)
    for length in range(2, 7):
        ours = rules.apply(NumpyOps(), logits, tokens, length, 2)
        theirs = rules.apply(TorchOps(), torch.from_numpy(logits), torch.from_numpy(tokens), length, 2)
        np.testing.assert_array_equal(ours, theirs.numpy())


def multilingual_ids() -> PrefixIds:
    config = GenerationConfig(
        decoder_start_token_id=50258,
        no_timestamps_token_id=50363,
        prev_sot_token_id=50361,
        lang_to_id={"<|en|>": 50259, "<|fr|>": 50265},
        task_to_id={"translate": 50358, "transcribe": 50359},
        is_multilingual=True,
    )
    return PrefixIds.from_generation_config(config)


def test_prefixes():
    ids = multilingual_ids()
    assert decoder_prefix(ids, ids.language_token("french"), None, False) == [50258, 50265, 50359, 50363]
    assert decoder_prefix(ids, ids.language_token("<|en|>"), "translate", True) == [50258, 50259, 50358]
    assert ids.language_of_token(50265) == "fr" and ids.no_speech_token_id == 50362
    with pytest.raises(ValueError, match="not supported by this model"):
        ids.language_token("german")
    with pytest.raises(ValueError, match="unknown language"):
        ids.language_token("klingon")
    with pytest.raises(ValueError, match="unknown task"):
        decoder_prefix(ids, 50259, "summarize", False)
    english = PrefixIds(50257, 50362, 50360, {}, {}, False)
    assert decoder_prefix(english, None, None, False) == [50257, 50362]
    with pytest.raises(ValueError, match="English-only"):
        english.language_token("en")
    with pytest.raises(ValueError, match="English-only"):
        decoder_prefix(english, None, "translate", False)


def test_prompt_is_cut_like_openai():
    ids = multilingual_ids()
    prompt = [50361, *range(1000, 1300)]
    kept = prompt_tokens(ids, prompt, 448)
    assert kept[0] == 50361 and kept[1:] == prompt[-223:]
    assert prompt_tokens(ids, None, 448) == []
    with pytest.raises(ValueError, match="startofprev"):
        prompt_tokens(ids, [1000, 1001], 448)


def test_split_segments():
    from whisper_core.decoding import Segment, split_segments

    begin, eos = TIMESTAMP_BEGIN, EOS
    tokens = [begin, 10, 11, begin + 50, begin + 50, 12, begin + 75, eos, 13]
    assert split_segments(tokens, begin, eos) == [Segment(0.0, 1.0, (10, 11)), Segment(1.0, 1.5, (12,))]
    assert split_segments([10, begin + 5, 11], begin, eos, offset=30.0) == [
        Segment(30.0, 30.1, (10,)),
        Segment(30.1, None, (11,)),
    ]
    assert split_segments([eos], begin, eos) == []


def test_first_argmax_under_numpy_ops_is_numpys_argmax():
    """The greedy pick that the compiled loops use (two vectorised passes) keeps np.argmax's rule."""
    from tests.conftest import argmax_edge_rows
    from whisper_core.decoding import first_argmax

    rows = argmax_edge_rows()
    picked = first_argmax(NumpyOps(), rows)
    np.testing.assert_array_equal(picked, rows.argmax(axis=-1))
    assert picked.dtype == np.int32


def test_sampling_under_numpy_ops_inverts_the_distribution_and_keeps_the_top_k():
    """The shared sampling pieces hold on the NumPy reference ops too: in float32, the precision every
    backend samples in, and in float64. The top-k threshold, found in float32, is compared in float32: a
    float64 logit that rounds up to it keeps its place."""
    from tests.helpers import assert_inverts_distribution, assert_keeps_top_k
    from whisper_core.decoding import invert_distribution, keep_top_k

    for dtype in (np.float32, np.float64):
        assert_inverts_distribution(lambda rows, draws: invert_distribution(NumpyOps(), rows, rows, draws), dtype)
    assert_keeps_top_k(lambda logits, k: keep_top_k(NumpyOps(), logits, k))
    kept = keep_top_k(NumpyOps(), np.array([[0.99999999, 0.5, 0.2]]), 1)
    np.testing.assert_array_equal(kept, [[0.99999999, -np.inf, -np.inf]])


def test_a_row_held_to_its_earliest_end_opens_another_segment_instead_of_ending():
    """A row held to an end floor (a timestamp token id; 0: none), once it has said something: after a segment
    closed before the floor only a timestamp may follow (the next segment opens: not ``<|endoftext|>``, not a
    special token), and after a segment opened before it something must be said before the end. A timestamp
    past the floor (closing or opening: the model found nothing more to say), text, or a row without a floor
    end as before; and a row that has said nothing may end at once (non-speech comes back empty). The PyTorch
    ops agree."""
    import torch

    from whisper_pt.generation import TorchOps

    rules = LogitRules(VOCAB, EOS, NO_TIMESTAMPS, SUPPRESS, BEGIN_SUPPRESS, True, 50)
    held = TIMESTAMP_BEGIN + 20
    rows = [
        ([TIMESTAMP_BEGIN, 10, TIMESTAMP_BEGIN + 5], held),  # closed at 5, held to 20: must open a segment
        ([TIMESTAMP_BEGIN, 10, TIMESTAMP_BEGIN + 25], held),  # closed at 25, past its floor
        ([TIMESTAMP_BEGIN, 10, TIMESTAMP_BEGIN + 5], 0),  # no floor
        ([TIMESTAMP_BEGIN, 10, 11], held),  # ended after text (a segment left open): not held
        ([10, TIMESTAMP_BEGIN + 4, TIMESTAMP_BEGIN + 4], held),  # a segment opened before the floor
        ([10, TIMESTAMP_BEGIN + 5, TIMESTAMP_BEGIN + 25], held),  # one opened past the floor may end the row
    ]
    tokens = np.asarray([[3, 3, *row] for row, _ in rows])
    floors = np.asarray([[floor] for _, floor in rows])
    logits = np.random.default_rng(0).normal(size=(len(rows), VOCAB)).astype(np.float32)
    logits[:, TIMESTAMP_BEGIN:] -= 5  # no timestamp forced by its mass
    free = rules.apply(NumpyOps(), logits, tokens, 5, 2)
    ours = rules.apply(NumpyOps(), logits, tokens, 5, 2, rules.masks(NumpyOps(), logits, floors))
    assert np.isfinite(free[[0, 4, 5], EOS]).all() and np.isneginf(ours[[0, 4], EOS]).all()
    assert np.isneginf(ours[0, :TIMESTAMP_BEGIN]).all()  # after an early close: a timestamp, nothing else
    assert np.isfinite(ours[0, TIMESTAMP_BEGIN + 5 :]).all()  # ... which may open the next segment at once
    assert np.isfinite(free[0, EOS + 1 : NO_TIMESTAMPS]).any()  # (specials the rules alone let through)
    assert np.isfinite(ours[4, 8:EOS]).any()  # after an early opening: text
    changed = np.isneginf(ours) != np.isneginf(free)
    assert not changed[[1, 2, 3, 5]].any()  # nothing else moves
    assert changed[4].sum() == 1  # just the end
    torch_ops = TorchOps()
    masks = rules.masks(torch_ops, torch.from_numpy(logits), torch.from_numpy(floors))
    theirs = rules.apply(torch_ops, torch.from_numpy(logits), torch.from_numpy(tokens), 5, 2, masks)
    np.testing.assert_array_equal(ours, theirs.numpy())
    # a held row whose first token is a timestamp may end without a word (a clip of no speech)
    first = np.asarray([[3, 3, TIMESTAMP_BEGIN]])
    masks = rules.masks(NumpyOps(), logits[:1], np.asarray([[held]]))
    assert np.isfinite(rules.apply(NumpyOps(), logits[:1], first, 3, 2, masks)[0, EOS])
    untimed = LogitRules(VOCAB, EOS, NO_TIMESTAMPS, SUPPRESS, BEGIN_SUPPRESS, False, 50)
    assert "end_floor" not in untimed.masks(NumpyOps(), logits, floors)  # without timestamps there is no end time
