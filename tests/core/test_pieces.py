"""Batched pieces and hallucination guards without a model: time maps, grouping, windows, loops, overruns."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from whisper_core.transcribe import (
    FallbackOptions,
    Generated,
    SpeechChunk,
    WindowResult,
    WordTiming,
    echoes_an_end,
    fit_to_audio,
    group_speech,
    has_repetition_loop,
    loop_start,
    map_to_file,
    needs_fallback,
    overlapping_windows,
    pack_leftovers,
)
from whisper_core.transcribe.batched import _unheard
from whisper_core.transcribe.fallback import row_bucket
from whisper_core.transcribe.guards import TAIL_SLACK

RATE = 16000


def test_clip_time_maps_back_to_where_it_was_spoken():
    """Speech at 2-5 s and 10-12 s heard back to back: clip time 3.5 s is 0.5 s into the second span."""
    chunk = SpeechChunk(((2 * RATE, 5 * RATE), (10 * RATE, 12 * RATE)), RATE)
    assert chunk.samples == 5 * RATE and (chunk.start, chunk.end) == (2.0, 12.0)
    assert chunk.file_time(0.0) == 2.0
    assert chunk.file_time(1.0) == 3.0
    assert chunk.file_time(3.5) == 10.5
    assert chunk.file_time(3.0) == 10.0  # a start on the seam opens the second span ...
    assert chunk.file_time(3.0, is_end=True) == 5.0  # ... an end on it closes the first
    assert chunk.file_time(9.0) == 12.0  # past the clip: clamped to the last span's end
    assert chunk.file_time(-1.0) == 2.0
    audio = np.arange(13 * RATE, dtype=np.float32)
    assert np.array_equal(
        chunk.audio(audio), np.concatenate([audio[2 * RATE : 5 * RATE], audio[10 * RATE : 12 * RATE]])
    )


@pytest.mark.parametrize("spans", [(), ((5, 3),), ((0, 10), (5, 20))])
def test_a_chunk_refuses_spans_out_of_order(spans):
    with pytest.raises(ValueError):
        SpeechChunk(spans, RATE)


def test_segments_and_words_move_to_file_time():
    chunk = SpeechChunk(((2 * RATE, 5 * RATE), (10 * RATE, 12 * RATE)), RATE)
    words = [
        WordTiming(" a", [1], 0.5, 1.0, 0.9),
        WordTiming(" b", [2], 2.5, 3.2, 0.9),  # over the seam at clip 3.0 s, mostly before it
        WordTiming(" c", [3], 2.9, 3.4, 0.9),  # over the seam, mostly after it
    ]
    segment = SimpleNamespace(start=0.5, end=3.4, words=words, token_timestamps=[0.5, 2.9])
    map_to_file(segment, chunk)
    assert (segment.start, segment.end) == (2.5, 10.4)
    # a word stays in the span that holds its middle: silence cut out by the VAD never lies inside a word
    assert [(w.start, w.end) for w in segment.words] == [(2.5, 3.0), (4.5, 5.0), (10.0, 10.4)]
    assert segment.token_timestamps == [2.5, 4.9]
    seam = SimpleNamespace(start=3.0, end=3.0, words=[], token_timestamps=None)
    map_to_file(seam, chunk)
    assert seam.start == seam.end == 10.0  # never ends before it starts


def test_speech_is_gathered_into_pieces_of_at_most_one_window():
    seconds = [(0, 10), (12, 25), (30, 40), (41, 42), (50, 120)]
    chunks = group_speech([(a * RATE, b * RATE) for a, b in seconds], 30 * RATE, RATE)
    assert all(chunk.samples <= 30 * RATE for chunk in chunks)
    assert [[(a / RATE, b / RATE) for a, b in chunk.spans] for chunk in chunks] == [
        [(0, 10), (12, 25)],
        [(30, 40), (41, 42)],
        [(50, 80)],  # a span longer than a window is cut into pieces that fit
        [(80, 110)],
        [(110, 120)],
    ]
    assert all(chunk.closed and chunk.owned == (-math.inf, math.inf) for chunk in chunks)
    assert group_speech([], 30 * RATE, RATE) == []


def test_a_files_leftovers_are_heard_together():
    """Three pieces closed 2-5 s early: their leftovers fill one window, in file order, each span where it was."""
    pieces = [SpeechChunk(((0, 30 * RATE),), RATE), SpeechChunk(((40 * RATE, 70 * RATE),), RATE)]
    leftovers = [
        pieces[1].after(25.0),
        SpeechChunk(((20 * RATE, 22 * RATE), (25 * RATE, 30 * RATE)), RATE),
        SpeechChunk(((80 * RATE, 83 * RATE),), RATE),
    ]
    packed = pack_leftovers(leftovers, 30 * RATE)
    assert [[(a / RATE, b / RATE) for a, b in chunk.spans] for chunk in packed] == [
        [(20, 22), (25, 30), (65, 70), (80, 83)]
    ]
    assert packed[0].closed and packed[0].file_time(7.5) == 65.5
    assert len(pack_leftovers(leftovers, 10 * RATE)) == 2  # more than a window: as few as fit
    assert pack_leftovers([], 30 * RATE) == []


def test_what_a_decoding_never_reached_is_left_over_but_not_the_end_of_its_last_sentence():
    piece = SpeechChunk(((10 * RATE, 20 * RATE), (25 * RATE, 28 * RATE), (30 * RATE, 40 * RATE)), RATE)
    # stopped 1.3 s before the end of a span: that rest is the sentence just given; the later spans are left over
    assert _unheard(piece, 8.7).spans == ((25 * RATE, 28 * RATE), (30 * RATE, 40 * RATE))
    # stopped 2.5 s before the end of a span: speech left out
    assert _unheard(piece, 13 - TAIL_SLACK - 0.5).spans == ((round(25.5 * RATE), 28 * RATE), (30 * RATE, 40 * RATE))
    assert _unheard(piece, 13.0).spans == ((30 * RATE, 40 * RATE),)  # on a seam: the next span, whole
    assert _unheard(piece, 22.0) is None  # 1 s before the end: nothing left over
    assert _unheard(piece, 23.0) is None


def test_words_bound_their_segment_after_the_move():
    """A word whose edges alignment put across a seam is brought back to its span; its segment follows it
    rather than staying stretched over the silence that was cut out."""
    chunk = SpeechChunk(((30 * RATE, 35 * RATE), (75 * RATE, 76 * RATE)), RATE)
    segment = SimpleNamespace(
        start=4.8, end=5.6, words=[WordTiming(" gious", [1], 4.8, 5.6, 0.5)], token_timestamps=None
    )
    map_to_file(segment, chunk)
    assert (segment.start, segment.end) == (75.0, 75.6) == (segment.words[0].start, segment.words[0].end)


def test_a_leftover_that_repeats_the_end_of_the_sentence_before_is_an_echo():
    def segment(text, start, end):
        return SimpleNamespace(text=text, start=start, end=end)

    earlier = [segment(" Ask what you can do for your country.", 123.8, 125.6)]
    assert echoes_an_end(segment(" for your country", 125.6, 126.3), earlier)
    assert echoes_an_end(segment(" For your country!", 126.4, 126.9), earlier)
    assert not echoes_an_end(segment(" For your country.", 127.0, 128.0), earlier)  # said again, later
    assert not echoes_an_end(segment(" Remember to lock the gate.", 125.6, 128.0), earlier)
    assert not echoes_an_end(segment(" ...", 125.6, 126.0), earlier)  # no words: not this rule's to judge
    assert not echoes_an_end(segment(" country", 125.6, 126.0), [])


def test_windows_without_vad_overlap_and_own_their_middles():
    windows = overlapping_windows(65 * RATE, RATE)
    assert [(w.start, w.end) for w in windows] == [(0.0, 30.0), (20.0, 50.0), (40.0, 65.0)]
    assert [w.owned for w in windows] == [(-math.inf, 25.0), (25.0, 45.0), (45.0, math.inf)]
    assert [w.closed for w in windows] == [False, False, True]
    assert windows[1].owns(24.0, 27.0) and not windows[1].owns(20.0, 25.0)
    with pytest.raises(ValueError, match="half"):
        overlapping_windows(65 * RATE, RATE, 30.0, 15.0)


def test_loops_are_found_and_sentences_are_not():
    sentence = list(range(100, 112))
    assert has_repetition_loop([7] * 16) and not has_repetition_loop([7] * 15)
    assert has_repetition_loop([1, 2] * 8) and not has_repetition_loop([1, 2] * 7)
    assert has_repetition_loop(sentence + [5, 6, 7, 8, 9, 10] * 3)  # a phrase three times after real text
    assert has_repetition_loop(sentence * 3) and not has_repetition_loop(sentence * 2)
    assert not has_repetition_loop(list(range(300)))
    assert not has_repetition_loop([])
    # "no, no, no" and a phrase said twice are speech, not loops
    assert not has_repetition_loop([3, 4, 3, 4, 3, 4, 99, 5, 6, 7, 8, 9, 10, 5, 6, 7, 8, 9, 10])


def test_a_loop_is_cut_after_its_first_copy():
    sentence = list(range(100, 112))
    assert loop_start([7] * 16) == 1
    assert loop_start([1, 2] * 8) == 2
    assert loop_start(sentence + [5, 6, 7, 8, 9, 10] * 3 + [11]) == len(sentence) + 6
    assert loop_start(sentence * 3) == len(sentence)
    assert loop_start(sentence * 2) is None and loop_start([]) is None


def test_a_loop_sends_the_window_to_the_next_temperature():
    looping = WindowResult(Generated((1, 2) * 8, -0.2 * 17, 0.0), "text", 0.0, 1.5, looping=True)
    assert needs_fallback(looping, FallbackOptions())
    assert not needs_fallback(looping, FallbackOptions(loop_check=False))


def test_segments_past_the_end_of_the_audio_are_cut_or_dropped():
    def segment(start, end, words=()):
        return SimpleNamespace(start=start, end=end, words=[WordTiming(w, [], a, b, 1.0) for w, a, b in words])

    kept = fit_to_audio(
        [
            segment(80.0, 88.0, [(" a", 80.0, 81.0)]),
            segment(88.0, 90.0, [(" b", 88.0, 88.9), (" c", 89.0, 89.8), (" d", 89.3, 90.0)]),
            segment(88.7, 95.7),  # mostly outside: the invented last sentence
            segment(89.2, 91.0),  # starts at the end
        ],
        89.2,
    )
    assert [(s.start, s.end) for s in kept] == [(80.0, 88.0), (88.0, 89.2)]
    assert [(w.word, w.start, w.end) for w in kept[1].words] == [(" b", 88.0, 88.9), (" c", 89.0, 89.2)]


@pytest.mark.parametrize(
    ("rows", "bucket"), [(1, 1), (2, 2), (3, 3), (4, 4), (5, 6), (7, 8), (8, 8), (9, 16), (40, 40), (41, 48)]
)
def test_compiled_backends_decode_in_a_few_batch_shapes(rows, bucket):
    assert row_bucket(rows) == bucket
