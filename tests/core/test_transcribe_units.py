"""Long-form transcription without a model: seek maths, fallback decisions, DTW, writers, the loop itself."""

from __future__ import annotations

import dataclasses
import io
from types import SimpleNamespace

import numpy as np
import pytest

from whisper_core import SAMPLE_RATE, WhisperFeatureExtractor, WhisperTokenizer
from whisper_core.transcribe import (
    FallbackOptions,
    Generated,
    TranscribeOptions,
    Transcriber,
    Transcription,
    TranscriptSegment,
    WindowDecoder,
    WindowResult,
    compression_ratio,
    needs_fallback,
    split_window,
)
from whisper_core.transcribe.batched import _unfinished_piece
from whisper_core.transcribe.fallback import best_failure, is_silent, max_new_tokens
from whisper_core.transcribe.windows import clip_ranges
from whisper_core.transcribe.word_timing import WordTiming, dtw, median_filter, merge_punctuations
from whisper_core.transcribe.writers import format_timestamp, write_srt, write_tsv, write_txt, write_vtt

T0 = 50363  # <|0.00|> in the English-only vocabulary


def ts(seconds: float) -> int:
    return T0 + round(seconds / 0.02)


# -- seek maths ------------------------------------------------------------------------------
def test_consecutive_timestamps_cut_segments_and_seek_to_the_last_closed_one():
    tokens = [ts(0), 11, 12, ts(2.5), ts(2.5), 13, ts(7.0), ts(8.0), 14]  # the last segment is unfinished
    split = split_window(tokens, T0, time_offset=40.0, segment_frames=3000)
    assert [(s, e) for s, e, _ in split.segments] == [(40.0, 42.5), (42.5, 47.0)]
    assert split.segments[1][2] == [ts(2.5), 13, ts(7.0)]
    assert split.advance == 700 and not split.single_timestamp_ending  # 7.0 s = 700 mel frames
    assert split.unfinished == [ts(8.0), 14]


def test_a_lone_timestamp_at_the_end_means_seek_to_the_window_end():
    tokens = [ts(0), 11, ts(3.0), ts(3.0), 12, ts(6.0)]
    split = split_window(tokens, T0, time_offset=0.0, segment_frames=2400)
    assert split.single_timestamp_ending and split.advance == 2400
    assert [(s, e) for s, e, _ in split.segments] == [(0.0, 3.0), (3.0, 6.0)]


def test_without_consecutive_timestamps_the_window_is_one_segment():
    split = split_window([ts(0), 11, 12, ts(4.2)], T0, time_offset=30.0, segment_frames=1500)
    assert split.segments == [(30.0, 34.2, [ts(0), 11, 12, ts(4.2)])] and split.advance == 1500
    split = split_window([11, 12], T0, time_offset=30.0, segment_frames=1500)
    assert split.segments[0][:2] == (30.0, 45.0)  # no timestamp: the window's own length


def test_clip_timestamps_become_frame_ranges():
    assert clip_ranges([], 5000) == [(0, 5000)]
    assert clip_ranges([1.5, 3.0, 10.0], 5000) == [(150, 300), (1000, 5000)]


# -- fallback decisions ----------------------------------------------------------------------
def _result(avg_logprob: float, no_speech: float = 0.0, ratio: float = 1.5, temperature: float = 0.0) -> WindowResult:
    tokens = (1, 2, 3)
    return WindowResult(Generated(tokens, avg_logprob * (len(tokens) + 1), no_speech), "text", temperature, ratio)


def test_when_every_temperature_fails_a_loop_is_not_kept():
    options = FallbackOptions()
    confident_loop = dataclasses.replace(_result(-1.2, temperature=0.0), looping=True)
    repetitive = _result(-1.3, ratio=3.0, temperature=0.2)
    unsure = _result(-1.8, temperature=0.4)
    assert best_failure([confident_loop, repetitive, unsure], options) is unsure
    assert best_failure([confident_loop, repetitive], options) is confident_loop  # all repeat: the most likely
    no_checks = FallbackOptions(compression_ratio_threshold=None, loop_check=False)
    assert best_failure([confident_loop, repetitive, unsure], no_checks) is confident_loop


def test_fallback_rules():
    options = FallbackOptions()
    assert not needs_fallback(_result(-0.5), options)
    assert needs_fallback(_result(-1.5), options)  # too unsure
    assert needs_fallback(_result(-0.5, ratio=2.6), options)  # too repetitive
    assert not needs_fallback(_result(-1.5, no_speech=0.9), options)  # silence: accepted, then skipped
    assert is_silent(_result(-1.5, no_speech=0.9), options)
    assert not is_silent(_result(-0.5, no_speech=0.9), options)  # confident text despite the no-speech token
    assert not needs_fallback(_result(-1.5), FallbackOptions(logprob_threshold=None))


def test_compression_ratio_flags_loops():
    assert compression_ratio("the cat sat on the mat") < 1.5
    assert compression_ratio("over and over " * 30) > 2.4
    assert compression_ratio("") == 0.0


class ScriptedBackend:
    """Returns, per temperature, a fixed average log-probability; records every call."""

    bucket_prefix = False

    def __init__(self, logprob_by_temperature: dict[float, list[float]]) -> None:
        self.script = logprob_by_temperature
        self.calls: list[tuple[float, int]] = []
        self.ends: list[list[float | None] | None] = []  # each call's earliest_ends
        self.encoded = 0
        self.config = SimpleNamespace(max_target_positions=448, max_source_positions=1500)
        self.generation_config = SimpleNamespace(
            is_multilingual=False,
            no_timestamps_token_id=T0 - 1,
            decoder_start_token_id=50257,
            prev_sot_token_id=50360,
            lang_to_id={},
            task_to_id={},
        )

    def encode(self, features):
        self.encoded += 1
        return features  # the scripted "states" are the features

    def take_rows(self, states, rows):
        return states[np.asarray(rows)]

    def generate(
        self,
        features,
        prompts,
        *,
        temperature,
        max_new_tokens,
        language,
        task,
        seed,
        timestamps,
        text_prefixes,
        prefix_width,
        earliest_ends,
    ):
        self.calls.append((temperature, len(prompts)))
        self.ends.append(earliest_ends)
        rows = [int(row[0, 0]) for row in features]
        return [Generated((10 + row,), 2 * self.script[temperature][row], 0.0) for row in rows]


def _decoder(backend: ScriptedBackend, tokenizer_dir) -> WindowDecoder:
    return WindowDecoder(
        backend, WhisperTokenizer.from_pretrained(tokenizer_dir), FallbackOptions(temperatures=(0.0, 0.5, 1.0))
    )


def test_only_failing_rows_are_decoded_again(tiny_en_tokenizer_dir):
    backend = ScriptedBackend({0.0: [-0.2, -2.0, -3.0], 0.5: [None, -0.3, -2.5], 1.0: [None, None, -2.8]})
    features = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((3, 2, 2), np.float32)
    results = _decoder(backend, tiny_en_tokenizer_dir).decode(features, [None] * 3, [None] * 3)
    assert backend.calls == [(0.0, 3), (0.5, 2), (1.0, 1)]
    assert backend.encoded == 1  # one encoder pass serves every temperature
    assert [r.temperature for r in results] == [0.0, 0.5, 0.5]  # row 2 failed everywhere: best average kept
    assert results[2].avg_logprob == pytest.approx(-2.5)


def test_each_rows_earliest_end_follows_it_through_draws_padding_and_fallback(tiny_en_tokenizer_dir):
    """A window held to its end is held at every temperature, in each of its ``best_of`` draws and in the rows a
    compiled backend pads a batch with (copies of the first window); windows without one pass None."""
    passing = [-0.1, -0.1]  # windows 3 and 4 pass at once
    backend = ScriptedBackend(
        {0.0: [-0.2, -2.0, -3.0, *passing], 0.5: [None, -0.3, -2.5, None, None], 1.0: [None, None, -2.8, None, None]}
    )
    features = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 2, 2), np.float32)
    decoder = WindowDecoder(
        backend,
        WhisperTokenizer.from_pretrained(tiny_en_tokenizer_dir),
        FallbackOptions(temperatures=(0.0, 0.5, 1.0), best_of=2),
    )
    backend.bucket_prefix = True  # five windows are decoded as six, the sixth a copy of the first
    decoder.decode(features, [None] * 5, [None] * 5, earliest_ends=[5.0, 12.5, 20.0, None, None])
    assert backend.ends == [[5.0, 12.5, 20.0, None, None, 5.0], [12.5, 12.5, 20.0, 20.0], [20.0, 20.0]]
    backend.ends.clear()
    decoder.decode(features[:1], [None], [None])
    assert backend.ends == [None]


def test_sample_length_leaves_room_for_the_prompt():
    backend = ScriptedBackend({})
    assert max_new_tokens(backend, [None]) == 224
    assert max_new_tokens(backend, [list(range(224)), None]) == 448 - 225
    # a limit is rounded up to a power of two, so compiled backends compile a few lengths
    assert max_new_tokens(backend, [None], limit=40) == 64
    assert max_new_tokens(backend, [None], limit=64) == 64
    assert max_new_tokens(backend, [None], limit=1000) == 224
    assert max_new_tokens(backend, [list(range(400))], limit=64) == 448 - 401
    backend.bucket_prefix = True  # a compiled backend: a new length would be a new program
    assert max_new_tokens(backend, [None], limit=40) == 224


# -- the seek loop, driven by a scripted model -------------------------------------------------
class SeekBackend(ScriptedBackend):
    """Every window: two 4 s segments, then an unfinished one; so seek moves 8 s per window."""

    def __init__(self) -> None:
        super().__init__({})
        self.prompts: list[list[int] | None] = []
        self.prefix_widths: set[int] = set()

    def generate(self, features, prompts, **options):  # the keywords as ScriptedBackend.generate names them
        self.prompts.extend(prompts)
        self.prefix_widths.add(options["prefix_width"])
        self.ends.append(options["earliest_ends"])
        tokens = (ts(0), 262, ts(4), ts(4), 262, ts(8), ts(8), 262)
        return [Generated(tokens, -0.1 * (len(tokens) + 1), 0.0) for _ in prompts]


def test_the_loop_keeps_counting_past_30_s_and_prompts_with_the_previous_text(tiny_en_tokenizer_dir):
    backend = SeekBackend()
    transcriber = Transcriber(
        backend, WhisperTokenizer.from_pretrained(tiny_en_tokenizer_dir), WhisperFeatureExtractor()
    )
    noise = np.random.default_rng(0).standard_normal(50 * SAMPLE_RATE).astype(np.float32) * 0.1
    (result,) = transcriber.transcribe([noise], TranscribeOptions(temperature=(0.0,)))
    starts = [segment.start for segment in result.segments]
    # windows at 0, 8, ..., 48 s; the last window's second segment (52-56 s) lies past the audio's end
    assert starts == pytest.approx([4.0 * k for k in range(13)])
    assert result.segments[-1].end == 50.0  # 48-52 s, cut at the end of the audio
    assert all(s.seek == round(s.start // 8 * 800) for s in result.segments)
    assert backend.prompts[0] == []
    assert backend.prompts[1][0] == 50360 and backend.prompts[1][1:] == [ts(0), 262, ts(4), ts(4), 262, ts(8)]
    # every window, the first one without a prompt included, asks for the widest prefix a window may carry
    # (<|startofprev|>, 223 tokens of text, <|startoftranscript|>), so a compiled backend runs one program
    assert backend.prefix_widths == {1 + 223 + 1}


@pytest.mark.parametrize(
    ("seconds", "options", "width"),
    [
        (20, TranscribeOptions(temperature=(0.0,)), 0),  # one window: nothing to grow into
        (50, TranscribeOptions(temperature=(0.0,), condition_on_prev_tokens=False), 0),
        # <|startofprev|>, " Hello there" (two tokens), <|startoftranscript|>
        (50, TranscribeOptions(temperature=(0.0,), condition_on_prev_tokens=False, initial_prompt="Hello there"), 4),
    ],
)
def test_windows_ask_for_the_prefix_width_their_prompts_can_reach(tiny_en_tokenizer_dir, seconds, options, width):
    backend = SeekBackend()
    transcriber = Transcriber(
        backend, WhisperTokenizer.from_pretrained(tiny_en_tokenizer_dir), WhisperFeatureExtractor()
    )
    noise = np.random.default_rng(0).standard_normal(seconds * SAMPLE_RATE).astype(np.float32) * 0.1
    transcriber.transcribe([noise], options)
    assert backend.prefix_widths == {width}


def test_with_vad_the_windows_reaching_the_end_of_the_speech_are_held_to_it(tiny_en_tokenizer_dir, jfk_audio):
    """Sequential decoding with ``vad_filter`` hears the speech back to back: a window whose audio runs to the end
    of that clip is held to 2 s before it (``generate(earliest_end=...)``), the others are not; without VAD no
    window is held (its audio may end in silence)."""
    backend = SeekBackend()
    transcriber = Transcriber(
        backend, WhisperTokenizer.from_pretrained(tiny_en_tokenizer_dir), WhisperFeatureExtractor()
    )
    pause = np.zeros(3 * SAMPLE_RATE, np.float32)
    audio = np.concatenate([jfk_audio, pause, jfk_audio, pause, jfk_audio, pause, jfk_audio])
    transcriber.transcribe([audio], TranscribeOptions(temperature=(0.0,), vad_filter=True))
    speech = transcriber.speech(audio, TranscribeOptions(vad_filter=True)).samples / SAMPLE_RATE
    assert 30 < speech < len(audio) / SAMPLE_RATE
    windows = [8.0 * k for k in range(len(backend.ends))]  # the scripted model moves 8 s a window
    expected = [[round(speech - start - 2.0, 2)] if start + 30 >= speech else None for start in windows]
    assert [None if ends is None else [round(end, 2) for end in ends] for ends in backend.ends] == expected
    assert expected[0] is None and expected[-1] is not None
    backend.ends.clear()
    transcriber.transcribe([audio], TranscribeOptions(temperature=(0.0,)))
    assert backend.ends and not any(backend.ends)


# -- batched pieces ---------------------------------------------------------------------------
def test_a_closed_piece_keeps_the_segment_it_cut_off():
    """Speech that runs to the end of a piece: no later piece decodes it again, so it is kept,
    from its opening timestamp to the end of the piece's audio."""
    vocabulary = SimpleNamespace(eot=50256, timestamp_begin=T0, time_precision=0.02, frames_per_second=100)
    split = split_window([ts(0), 11, ts(2.5), ts(3.0), 12, 13], T0, time_offset=0.0, segment_frames=1234)
    assert _unfinished_piece(split, vocabulary, 1234) == [(3.0, 12.34, [ts(3.0), 12, 13])]
    closed = split_window([ts(0), 11, ts(2.5), ts(3.0)], T0, time_offset=0.0, segment_frames=1234)
    assert closed.unfinished == [ts(3.0)] and _unfinished_piece(closed, vocabulary, 1234) == []


# -- word timing pieces ----------------------------------------------------------------------
def _brute_force_dtw_cost(cost: np.ndarray) -> float:
    rows, cols = cost.shape
    total = np.full((rows + 1, cols + 1), np.inf)
    total[0, 0] = 0
    for i in range(1, rows + 1):
        for j in range(1, cols + 1):
            total[i, j] = cost[i - 1, j - 1] + min(total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])
    return total[rows, cols]


@pytest.mark.parametrize("shape", [(1, 1), (3, 10), (7, 7), (12, 40)])
def test_dtw_finds_the_cheapest_monotonic_path(shape):
    cost = np.random.default_rng(sum(shape)).random(shape)
    rows, cols = dtw(cost)
    assert rows[0] == 0 and cols[0] == 0 and rows[-1] == shape[0] - 1 and cols[-1] == shape[1] - 1
    steps = np.stack([np.diff(rows), np.diff(cols)], axis=1)
    assert {tuple(step) for step in steps} <= {(0, 1), (1, 0), (1, 1)}
    assert cost[rows, cols].sum() == pytest.approx(_brute_force_dtw_cost(cost))


def test_dtw_follows_a_diagonal_band():
    cost = np.ones((5, 20))
    for token in range(5):
        cost[token, 4 * token : 4 * token + 4] = 0.0  # token k is "spoken" in frames 4k .. 4k + 3
    rows, cols = dtw(cost)
    first_frame = [int(cols[rows == token][0]) for token in range(5)]
    assert first_frame == [0, 4, 8, 12, 16]


@pytest.mark.parametrize("shape", [(11,), (3, 11), (2, 3, 11), (2, 2, 3, 8), (6, 2), (4, 3)], ids=str)
@pytest.mark.parametrize("width", [1, 3, 5, 7, 9])
def test_median_filter_matches_openai_whisper(shape, width):
    """The whole output against openai-whisper's own filter (torch's reflect padding, then the middle of
    each sorted window), for 1-4 dimensions and rows from longer than the width down to no longer than
    half of it (which both return unchanged)."""
    import torch
    from whisper.timing import median_filter as reference

    rng = np.random.default_rng(width)
    for x in (rng.random(shape), rng.integers(0, 4, size=shape).astype(np.float32)):  # the second has ties
        filtered = median_filter(x, width)
        expected = reference(torch.from_numpy(x), width).numpy()
        assert filtered.shape == x.shape
        np.testing.assert_array_equal(filtered, expected)


def test_median_filter_rejects_even_widths():
    x = np.random.default_rng(1).random((2, 3, 11))
    for width in (0, 2, 4):
        with pytest.raises(ValueError, match="odd"):
            median_filter(x, width)


def test_punctuation_joins_its_neighbours():
    words = [WordTiming(w, [i], i, i + 1, 1.0) for i, w in enumerate([' "', "Hello", ",", " world", ".", '"'])]
    merge_punctuations(words, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
    assert [w.word for w in words if w.word] == [' "Hello,', ' world."']
    assert [w.tokens for w in words if w.word] == [[0, 1, 2], [3, 4, 5]]


# -- writers ---------------------------------------------------------------------------------
def test_timestamp_formats():
    assert format_timestamp(3725.5, always_include_hours=True, decimal_marker=",") == "01:02:05,500"
    assert format_timestamp(65.0004) == "01:05.000"
    assert format_timestamp(59.9996) == "01:00.000"  # rounding carries into the minutes
    with pytest.raises(ValueError):
        format_timestamp(-1.0)


def _transcription() -> Transcription:
    def segment(index: int, start: float, end: float, text: str) -> TranscriptSegment:
        return TranscriptSegment(index, 0, start, end, text, [1], [1], 0.0, -0.2, 1.1, 0.01)

    return Transcription(
        " Hi there. Bye.",
        [segment(0, 0.0, 1.5, " Hi there."), segment(1, 61.25, 3700.0, " Bye."), segment(2, 5, 5, "")],
        "en",
    )


def _written(writer) -> str:
    buffer = io.StringIO()
    writer(_transcription(), buffer)
    return buffer.getvalue()


def test_result_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from whisper_core.transcribe import writers

    written = writers.write_result(_transcription(), "talk.mp3", tmp_path, "all")
    assert sorted(path.name for path in written) == sorted(f"talk.{name}" for name in writers.WRITERS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(path.name for path in written)  # no temp files
    assert (tmp_path / "talk.txt").read_text() == "Hi there.\nBye.\n"

    def half_then_fail(result, file):
        file.write("half a subt")
        raise OSError("disk full")

    monkeypatch.setitem(writers.WRITERS, "srt", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        writers.write_result(_transcription(), "other.wav", tmp_path, "srt")
    assert not (tmp_path / "other.srt").exists() and len(list(tmp_path.iterdir())) == len(written)


def test_subtitle_writers():
    assert (
        _written(write_srt)
        == "1\n00:00:00,000 --> 00:00:01,500\nHi there.\n\n2\n00:01:01,250 --> 01:01:40,000\nBye.\n\n"
    )
    assert _written(write_vtt) == "WEBVTT\n\n00:00.000 --> 00:01.500\nHi there.\n\n01:01.250 --> 01:01:40.000\nBye.\n\n"
    assert _written(write_tsv) == "start\tend\ttext\n0\t1500\tHi there.\n61250\t3700000\tBye.\n"
    assert _written(write_txt) == "Hi there.\nBye.\n"
