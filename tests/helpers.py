"""Small random configs and comparison helpers shared by the tests of every backend (the real-data
fixtures are in conftest.py; the bridge's own small config and weights are in bridge/helpers.py).

Nothing here imports a backend at module level, so the core tests can use it without torch, TF or JAX.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from whisper_core.decoding.plan import prefix_bucket

# The modeling tests' config: every backend against transformers on random weights (DESIGN.md §3: 1e-5).
SMALL = dict(
    vocab_size=96, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
    decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=30,
    max_target_positions=24, num_mel_bins=80, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    decoder_start_token_id=3, begin_suppress_tokens=None, classifier_proj_size=32,
)  # fmt: skip
FRAMES = 2 * SMALL["max_source_positions"]  # mel frames: the encoder's convolutions halve them

# Narrower still, for checkpoint and live-model conversions (only the weights' round trip matters there).
SMALL_NARROW = dict(
    vocab_size=96, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
    decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=30,
    max_target_positions=20, decoder_start_token_id=1, pad_token_id=0, bos_token_id=0, eos_token_id=0,
)  # fmt: skip

# The generation tests' config: a 100-token vocabulary laid out like Whisper's (text < 50, then the
# special tokens, then timestamps), and the generation config that names those tokens.
WHISPER_LIKE = dict(
    vocab_size=100, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
    decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=30,
    max_target_positions=40, decoder_start_token_id=51, eos_token_id=50, pad_token_id=50, bos_token_id=50,
)  # fmt: skip
WHISPER_LIKE_GENERATION = dict(
    decoder_start_token_id=51, eos_token_id=50, pad_token_id=50, bos_token_id=50, no_timestamps_token_id=61,
    prev_sot_token_id=59, lang_to_id={"<|en|>": 52, "<|zh|>": 53, "<|de|>": 54, "<|es|>": 55},
    task_to_id={"translate": 56, "transcribe": 57}, is_multilingual=True, suppress_tokens=[1, 2, 3],
    begin_suppress_tokens=[5, 50], max_initial_timestamp_index=5, max_length=40,
)  # fmt: skip


def small_inputs(batch: int = 2, length: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[batch, 80, FRAMES]`` and decoder ids ``[batch, length]`` (starting with
    ``decoder_start_token_id``) for the ``SMALL`` config, drawn from NumPy's generator seeded 1."""
    rng = np.random.default_rng(1)
    features = rng.standard_normal((batch, SMALL["num_mel_bins"], FRAMES)).astype(np.float32)
    ids = rng.integers(4, SMALL["vocab_size"], size=(batch, length)).astype(np.int32)
    ids[:, 0] = SMALL["decoder_start_token_id"]
    return features, ids


def scale_weights(model: Any, gain: float) -> Any:
    """Redraw every matrix of a torch model as N(0, gain / sqrt(fan_in)) from torch's global generator
    (seed it first): random weights large enough that outputs depend on the input."""
    import torch

    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, gain / parameter.shape[-1] ** 0.5)
    return model


def as_numpy(value: Any) -> np.ndarray:
    """A torch, TF, JAX or NumPy array as a float64 or integer NumPy array (bfloat16 included)."""
    if hasattr(value, "detach"):  # torch: NumPy cannot read bfloat16 or tensors that require grad
        value = value.detach().cpu()
        value = value.double() if value.is_floating_point() else value
        return value.numpy()
    array = np.asarray(value)
    return array.astype(np.float64) if array.dtype.kind == "f" or array.dtype.name == "bfloat16" else array


def max_abs(a: Any, b: Any) -> float:
    """The largest absolute difference of two same-shaped arrays of any backend, in float64."""
    a, b = np.asarray(as_numpy(a), np.float64), np.asarray(as_numpy(b), np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


def assert_seq2seq_outputs_close(mine: Any, theirs: Any, tol: float) -> None:
    """Two ``Seq2SeqLMOutput``s with hidden states and attentions: the final encoder states, the logits
    and every layer's states and attention maps within ``tol`` (max abs)."""
    assert max_abs(mine.encoder_last_hidden_state, theirs.encoder_last_hidden_state) <= tol
    assert max_abs(mine.logits, theirs.logits) <= tol
    for name in ("encoder_hidden_states", "decoder_hidden_states", "encoder_attentions", "decoder_attentions"):
        pairs = list(zip(getattr(mine, name), getattr(theirs, name), strict=True))
        assert max(max_abs(a, b) for a, b in pairs) <= tol, name
    assert max(max_abs(a, b) for a, b in zip(mine.cross_attentions, theirs.cross_attentions, strict=True)) <= tol


def assert_same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """The same names, and per name the same dtype and equal values."""
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name


def assert_sampled_within_top_k(sequences: Any, scores: Sequence[Any], k: int, begin: int, eos: int) -> int:
    """Every token drawn after the prefix (``begin`` columns) is among the ``k`` best of its step's
    ``scores [batch, vocab]`` (ties with the k-th kept, as in sampling) and was not suppressed; a row is
    only checked until its ``eos``, after which it holds padding. Returns how many draws were checked."""
    sequences = as_numpy(sequences)
    assert len(scores) == sequences.shape[1] - begin, (len(scores), sequences.shape)
    rows = np.arange(sequences.shape[0])
    running, checked = np.ones(sequences.shape[0], bool), 0
    for step, score in enumerate(scores):
        score = as_numpy(score)
        tokens = sequences[:, begin + step]
        kth = np.sort(score, axis=-1)[:, -k]
        picked = score[rows, tokens]
        outside = running & ~(np.isfinite(picked) & (picked >= kth))
        assert not outside.any(), (
            f"step {step}: rows {rows[outside].tolist()} drew {tokens[outside].tolist()} "
            f"(scores {picked[outside].tolist()}) outside the top {k} (k-th best {kth[outside].tolist()})"
        )
        checked += int(running.sum())
        running &= tokens != eos
    return checked


def differ(a: Any, b: Any) -> bool:
    """Two token-id arrays are not the same (a different shape counts as different)."""
    a, b = as_numpy(a), as_numpy(b)
    return a.shape != b.shape or bool((a != b).any())


def whisper_like_pt_model(gain: float = 2.0) -> Any:
    """whisper_pt on ``WHISPER_LIKE``, drawn with torch seeded 0 and its matrices scaled by ``gain`` (so
    that the outputs depend on the audio), with ``WHISPER_LIKE_GENERATION``: the reference the compiled
    backends' generate loops are compared with."""
    import torch

    from whisper_core import GenerationConfig, WhisperConfig
    from whisper_pt import WhisperForConditionalGeneration

    torch.manual_seed(0)
    model = scale_weights(WhisperForConditionalGeneration(WhisperConfig(**WHISPER_LIKE)).eval(), gain)
    model.generation_config = GenerationConfig(**WHISPER_LIKE_GENERATION)
    return model


def timestamp_rules_case() -> tuple[Any, np.ndarray, np.ndarray, int, int]:
    """``(rules, logits [4, 100], tokens [4, capacity], begin, capacity)``: timestamp rules over rows that
    mix text and timestamp tokens, for checking a backend's ops against ``NumpyOps`` at every length."""
    from whisper_core.decoding import LogitRules

    rules = LogitRules(
        vocab_size=100, eos_token_id=50, no_timestamps_token_id=61, suppress_tokens=(1, 2),
        begin_suppress_tokens=(5, 50), return_timestamps=True, max_initial_timestamp_index=5,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    begin, capacity = 3, 12
    tokens = np.full((4, capacity), 50)
    tokens[:, :begin] = [51, 52, 57]
    tokens[:, begin:] = rng.choice([10, 20, 62, 64, 70], size=(4, capacity - begin))
    logits = rng.standard_normal((4, 100)).astype(np.float32) * 3
    return rules, logits, tokens, begin, capacity


def assert_detect_language_matches_pt(pt: Any, ours: Any, features: np.ndarray, tol: float) -> None:
    """A compiled backend's ``detect_language`` against whisper_pt's on the same weights: the same codes,
    probabilities within ``tol``, and the same language token ids (transformers' form)."""
    import torch

    mine = ours.detect_language(features, return_probabilities=True)
    theirs = pt.detect_language(torch.from_numpy(features), return_probabilities=True)
    assert [sorted(row) for row in mine] == [sorted(row) for row in theirs]
    assert max(abs(a[code] - b[code]) for a, b in zip(mine, theirs, strict=True) for code in a) <= tol
    ids = ours.detect_language(features)
    np.testing.assert_array_equal(np.asarray(ids), pt.detect_language(torch.from_numpy(features)).numpy())


def assert_seeded_top_k_sampling(sample: Any, k: int, begin: int, eos: int, min_draws: int) -> None:
    """``sample(seed)`` (a generate call with sampling at top ``k``, ``output_scores`` and
    ``return_dict_in_generate``): every draw is within the top ``k`` of its step's scores (at least
    ``min_draws`` checked), the same seed gives the same ids, and another seed (4 or 5) other ids."""
    first = sample(3)
    assert assert_sampled_within_top_k(first.sequences, first.scores, k, begin, eos) >= min_draws
    np.testing.assert_array_equal(as_numpy(sample(3).sequences), as_numpy(first.sequences))
    others = [sample(seed) for seed in (4, 5)]
    assert any(differ(other.sequences, first.sequences) for other in others), "the seed changes nothing"
    for other in others:
        assert_sampled_within_top_k(other.sequences, other.scores, k, begin, eos)


def real_tiny_en_on_jfk(tiny_en_dir: Any, jfk_audio: np.ndarray, model_class: Any) -> tuple[Any, ...]:
    """``(processor, features, whisper_pt model, model_class's model)``: the real tiny.en (stored float16,
    loaded as float32) in whisper_pt and in another backend, and the jfk features in float32."""
    from whisper_core import WhisperProcessor
    from whisper_pt import WhisperForConditionalGeneration

    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    features = processor(jfk_audio, sampling_rate=16000, return_tensors="np").input_features
    pt = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir)
    return processor, np.asarray(features, np.float32), pt, model_class.from_pretrained(tiny_en_dir)


def assert_logits_and_loss_match_pt(processor: Any, features: np.ndarray, pt: Any, ours: Any, tol: float) -> None:
    """On the jfk transcript as labels: encoder states and logits within ``tol`` of whisper_pt's, and the
    loss within 1e-5 (relative) of the float64 cross-entropy of whisper_pt's logits (torch's float32
    cross-entropy is itself about 1.4e-5 relative off here)."""
    import torch

    from tests.conftest import JFK_TEXT

    labels = np.array([processor.tokenizer(JFK_TEXT)["input_ids"]])
    with torch.no_grad():
        theirs = pt(torch.from_numpy(features), labels=torch.from_numpy(labels))
    mine = ours(features, labels=labels)
    assert max_abs(mine.encoder_last_hidden_state, theirs.encoder_last_hidden_state) <= tol
    assert max_abs(mine.logits, theirs.logits) <= tol
    reference_loss = torch.nn.functional.cross_entropy(theirs.logits[0].double(), torch.from_numpy(labels[0])).item()
    assert abs(float(mine.loss) - reference_loss) <= 1e-5 * reference_loss


def assert_generate_takes_encoder_outputs(model: Any, features: Any, states: Any, max_new_tokens: int) -> None:
    """``generate(encoder_outputs=...)``, in each form the models take (a ``(states,)`` tuple, an output
    object, the bare ``[b, S, d]`` states), gives the ids of ``generate(features)`` whose encoder gave
    ``states``; with neither it is refused."""
    import pytest

    from whisper_core.outputs import BaseModelOutput

    expected = np.asarray(model.generate(features, language="en", max_new_tokens=max_new_tokens))
    for given in ((states,), BaseModelOutput(last_hidden_state=states), states):
        ids = model.generate(encoder_outputs=given, language="en", max_new_tokens=max_new_tokens)
        np.testing.assert_array_equal(np.asarray(ids), expected, err_msg=type(given).__name__)
    with pytest.raises(ValueError, match="give input_features"):
        model.generate(language="en", max_new_tokens=max_new_tokens)


def assert_bucketed_prefixes_match_unpadded(model: Any, features: np.ndarray, max_new_tokens: int) -> None:
    """``generate(bucket_prefix=True)`` with prompts of four lengths (prefix widths 11 to 14, one bucket)
    gives each the tokens, scores and no-speech probabilities of the unpadded rows; a compiled backend
    (one that counts its ``_loop_traces``) traces its loop once for the four."""
    kwargs = dict(language="en", max_new_tokens=max_new_tokens, output_scores=True, return_dict_in_generate=True)
    model.generate(features, prompt_ids=[59, 1, 2, 3, 4, 5, 6], bucket_prefix=True, **kwargs)  # compiles
    traces = getattr(model, "_loop_traces", 0)
    for extra in range(4):
        prompt = [59, *range(1, 7 + extra)]
        padded = model.generate(features, prompt_ids=prompt, bucket_prefix=True, **kwargs)
        plain = model.generate(features, prompt_ids=prompt, **kwargs)
        generated = len(plain.scores)
        bucket = prefix_bucket(14)  # the prefixes' widths, 11 to 14, share it
        assert as_numpy(padded.sequences).shape[1] == bucket + generated  # the bucket, then what was generated
        np.testing.assert_array_equal(
            as_numpy(padded.sequences)[:, -generated:], as_numpy(plain.sequences)[:, -generated:]
        )
        assert max_abs(padded.no_speech_probs, plain.no_speech_probs) <= 1e-5
        for a, b in zip(padded.scores, plain.scores, strict=True):
            a, b = as_numpy(a), as_numpy(b)
            finite = np.isfinite(b)
            assert (np.isfinite(a) == finite).all()
            assert np.abs(a[finite] - b[finite]).max() <= 1e-5 * max(1.0, float(np.abs(b[finite]).max()))
    if hasattr(model, "_loop_traces"):
        assert model._loop_traces == traces + 4  # the four plain widths compiled; the bucketed one did not again


def assert_nearby_limits_share_one_loop(model: Any, features: np.ndarray) -> None:
    """``max_new_tokens`` limits that round up to the same room (:data:`ROOM_STEP`) stop where asked, giving
    the first tokens, scores and log-probabilities of the longest decoding, and a compiled backend (one
    that counts its ``_loop_traces``) traces its loop once for all of them (a long file asks for 224 and
    221 new tokens, two programs before)."""
    kwargs = dict(language="en", output_scores=True, output_logprobs=True)
    longest = model.generate(features, max_new_tokens=6, **kwargs)
    traces = getattr(model, "_loop_traces", 0)
    for limit in (1, 3, 5):
        out = model.generate(features, max_new_tokens=limit, **kwargs)
        steps = len(out.scores)
        assert 1 <= steps <= limit and as_numpy(out.logprobs).shape[1] == steps
        np.testing.assert_array_equal(
            as_numpy(out.sequences), as_numpy(longest.sequences)[:, : as_numpy(out.sequences).shape[1]]
        )
        np.testing.assert_allclose(as_numpy(out.logprobs), as_numpy(longest.logprobs)[:, :steps], atol=1e-5)
    if hasattr(model, "_loop_traces"):
        assert model._loop_traces == traces


def assert_text_prefix_continues_the_decoding(model: Any, features: np.ndarray, max_new_tokens: int) -> None:
    """``generate(text_prefix_ids=...)`` given each row's first greedy tokens goes on exactly as the greedy
    decoding did (tokens and scores), with bucketed prefixes too; the prefix is refused with timestamps."""
    import pytest

    kwargs = dict(language="en", return_timestamps=False, output_scores=True, return_dict_in_generate=True)
    full = model.generate(features, max_new_tokens=max_new_tokens, **kwargs)
    generated = as_numpy(full.sequences)[:, -len(full.scores) :]
    forced = 2
    prefixes = [row[:forced].tolist() for row in generated]
    assert all(model.generation_config.eos_token_id not in prefix for prefix in prefixes)
    for bucket_prefix in (False, True):
        continued = model.generate(
            features,
            max_new_tokens=max_new_tokens - forced,
            text_prefix_ids=prefixes,
            bucket_prefix=bucket_prefix,
            **kwargs,
        )
        assert len(continued.scores) == len(full.scores) - forced
        np.testing.assert_array_equal(as_numpy(continued.sequences)[:, -len(continued.scores) :], generated[:, forced:])
        for a, b in zip(continued.scores, full.scores[forced:], strict=True):
            a, b = as_numpy(a), as_numpy(b)
            finite = np.isfinite(b)
            assert (np.isfinite(a) == finite).all()
            assert np.abs(a[finite] - b[finite]).max() <= 1e-4 * max(1.0, float(np.abs(b[finite]).max()))
    with pytest.raises(ValueError, match="text_prefix_ids needs return_timestamps=False"):
        model.generate(features, language="en", return_timestamps=True, max_new_tokens=2, text_prefix_ids=[1, 2])


def english_wer(reference: str, hypothesis: str) -> float:
    """Word error rate after Whisper's English text normaliser (what every real-speech check compares)."""
    import jiwer

    from whisper_core.normalizers import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    return jiwer.wer(normalize(reference), normalize(hypothesis))


def assert_one_loop_reads_every_temperature(model: Any, sample: Any, greedy: np.ndarray) -> None:
    """``sample(temperature)`` -> ids: the temperature is read when the loop runs, not fixed when it compiles.
    Near 0 the draws are the argmax ``greedy``; at 100 (near-uniform over the vocabulary) they are not; and a
    compiled backend (one that counts its ``_loop_traces``) traces its sampling loop once for all of them
    (a fallback through five sampling temperatures compiled five loops before)."""
    sample(0.5)  # compiles
    traces = getattr(model, "_loop_traces", 0)
    np.testing.assert_array_equal(as_numpy(sample(1e-4)), greedy)
    assert not np.array_equal(as_numpy(sample(100.0)), greedy)
    if hasattr(model, "_loop_traces"):
        assert model._loop_traces == traces


def assert_inverts_distribution(invert: Any, dtype: Any) -> None:
    """``invert(probabilities [rows, vocab], draws [rows, 1]) -> [rows]`` (a backend's sampling pick, in
    ``dtype``): draws spread evenly over [0, 1) land on each token in proportion to its probability; a token
    of probability 0 is never drawn, not even at the ends of the interval. Vocabularies of several search
    blocks (:data:`whisper_core.decoding.ops.SAMPLING_BLOCK`, with a last one cut short, an empty one
    between and an empty first one) and of fewer tokens than a block."""
    from whisper_core.decoding.ops import SAMPLING_BLOCK as block

    vocab = 3 * block + 7
    wide = np.zeros((3, vocab), dtype)
    wide[0, [0, block - 1, block, vocab - 1]] = [0.1, 0.2, 0.3, 0.4]  # the third block empty
    wide[1, 5 : vocab - 1 : 3] = 1.0  # a spread row whose last token is impossible
    wide[2, [2 * block + 1, 3 * block]] = [0.75, 0.25]  # the first two blocks empty
    narrow = np.array([[0.0, 0.5, 0.0, 0.25, 0.25, 0.0, 0.0]], dtype)
    draws = ((np.arange(1000) + 0.5) / 1000).astype(dtype)
    for row in [*(wide / wide.sum(-1, keepdims=True)), *narrow]:
        picks = np.asarray(invert(np.repeat(row[None], len(draws), 0), draws[:, None]))
        np.testing.assert_allclose(np.bincount(picks, minlength=len(row)) / len(draws), row, atol=2e-3)
        last_draw = np.nextafter(dtype(1), dtype(0))  # the largest draw below 1
        ends = np.asarray(invert(np.stack([row, row]), np.array([[0], [last_draw]], dtype)))
        assert (row[ends] > 0).all()


def assert_keeps_top_k(keep_top_k: Any) -> None:
    """``keep_top_k(logits [rows, vocab] float32, k)`` (a backend's top-k filter for sampling) keeps exactly
    the values at or above NumPy's sorted k-th value and sets the rest to -inf, on rows with ties, -inf,
    signed zeros and subnormals, for k from 1 to the vocabulary."""
    logits = np.random.default_rng(0).standard_normal((5, 1000)).astype(np.float32) * 5
    logits[0, :100] = -np.inf
    logits[1, 5:10] = 7.0  # a tie at the top
    logits[2] = 0.0
    logits[2, :3] = -0.0
    logits[3, :50], logits[3, 50:] = 1e-40, -3.0
    for k in (1, 5, 50, 999, 1000):
        kth = -np.sort(-logits, axis=-1)[:, k - 1 : k]
        expected = np.where(logits < kth, -np.inf, logits)
        np.testing.assert_array_equal(np.asarray(keep_top_k(logits, k)), expected)


def assert_samples_nan_rows_as_greedy(pick: Any, token_dtype: Any) -> None:
    """``pick(logits [rows, vocab] float32, top_k) -> [rows]`` (a backend's sampling pick) gives a row with a
    NaN logit greedy's token, the first NaN, with and without a top-k filter, over a vocabulary of several
    search blocks; the other rows are still sampled (never a masked token, only the top ``k`` when
    filtered), and the tokens come in the backend's ``token_dtype``."""
    logits = np.full((3, 3 * 256 + 7), -np.inf, np.float32)
    logits[0, [300, 700]] = np.nan  # two NaNs among -inf: a row of NaN probabilities
    logits[1] = np.linspace(-1.0, 1.0, logits.shape[1], dtype=np.float32)
    logits[1, 600] = np.nan  # one NaN among finite logits
    logits[2, :20] = np.arange(20, dtype=np.float32)  # twenty candidates, the last five the most likely
    for top_k in (0, 5):
        picks = pick(logits, top_k)
        assert np.asarray(picks).dtype == token_dtype, np.asarray(picks).dtype
        assert list(np.asarray(picks)[:2]) == [300, 600], (top_k, picks)
        assert 0 <= np.asarray(picks)[2] < 20 and (top_k == 0 or np.asarray(picks)[2] >= 15), (top_k, picks)
