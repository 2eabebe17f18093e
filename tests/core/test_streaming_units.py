"""The streaming engine's policies and clock without a model: agreement, de-duplication, AlignAtt's stop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from whisper_core.streaming import (
    LocalAgreement,
    StreamingOptions,
    StreamStats,
    StreamWord,
    drop_committed,
    late_token,
    simulate,
)
from whisper_core.streaming.online import Hypothesis, OnlineProcessor, first_late_word


def words(*spec: tuple[float, float, str]) -> list[StreamWord]:
    return [StreamWord(start, end, text) for start, end, text in spec]


def test_two_passes_commit_what_they_agree_on():
    agreement = LocalAgreement()
    agreement.insert(words((0.0, 0.4, " And"), (0.4, 0.6, " so"), (0.6, 0.9, " my")))
    assert agreement.flush() == []  # one hypothesis alone commits nothing
    agreement.insert(words((0.0, 0.4, " and"), (0.4, 0.6, " so,"), (0.6, 0.9, " by"), (0.9, 1.2, " fellow")))
    committed = agreement.flush()
    assert [w.text for w in committed] == [" and", " so,"]  # case and punctuation aside; the newer text kept
    assert [w.text for w in agreement.pending()] == [" by", " fellow"]
    # a pass over the whole buffer says the committed words again: only what follows them is inserted
    again = words((0.0, 0.4, " and"), (0.4, 0.6, " so,"), (0.6, 0.9, " my"), (0.9, 1.2, " fellow"))
    agreement.insert(drop_committed(again, agreement.committed))
    assert agreement.flush() == []  # " by" against " my": nothing more agreed
    agreement.insert(words((0.6, 0.9, " my"), (0.9, 1.2, " fellow"), (1.2, 1.8, " Americans")))
    assert [w.text for w in agreement.flush()] == [" my", " fellow"]
    assert [w.text for w in agreement.commit_all()] == [" Americans"]
    assert [w.text for w in agreement.committed] == [" and", " so,", " my", " fellow", " Americans"]


def test_words_already_committed_are_not_committed_again():
    committed = words((0.0, 0.5, " ask"), (0.5, 0.8, " not"), (0.8, 1.1, " what"))
    # the buffer still holds "not what": a hypothesis re-timed a little later repeats them
    again = words((0.62, 0.85, " not"), (0.9, 1.15, " what"), (1.2, 1.5, " your"), (1.5, 1.9, " country"))
    assert [w.text for w in drop_committed(again, committed)] == [" your", " country"]
    earlier = words((0.1, 0.4, " ask"), (1.3, 1.6, " your"))
    assert [w.text for w in drop_committed(earlier, committed)] == [" your"]  # before the last commit: dropped
    assert drop_committed(again, []) == again
    # re-timed earlier than the commit by more than the slack: found again by its words, not lost
    jittered = words((0.0, 0.4, " Ask"), (0.4, 0.6, " not"), (0.6, 0.8, " what"), (0.85, 1.0, " your"))
    assert [w.text for w in drop_committed(jittered, committed)] == [" your"]


def test_an_echo_of_the_committed_text_is_not_new_wherever_it_is_timed():
    committed = words(
        (0.0, 0.3, " The"), (0.3, 0.6, " orchestra"), (0.6, 1.0, " knew"), (1.0, 1.3, " it"), (1.3, 1.8, " well.")
    )
    # a buffer that begins in silence: Whisper says the prompt's last sentence again, timed to no time
    echo = words(
        (5.0, 5.0, " The"), (5.0, 5.0, " orchestra"), (5.0, 5.8, " knew"), (5.8, 5.8, " it"), (5.8, 5.8, " well.")
    )
    assert drop_committed(echo + words((6.5, 7.0, " Strong")), committed) == words((6.5, 7.0, " Strong"))
    # the same words spoken again take time: speech, not an echo; nor are three words timed to no time
    spoken = words(
        (5.0, 5.3, " The"), (5.3, 5.6, " orchestra"), (5.6, 6.0, " knew"), (6.0, 6.3, " it"), (6.3, 6.8, " well.")
    )
    assert drop_committed(spoken, committed) == spoken
    assert drop_committed(echo[2:], committed) == echo[2:]


def test_a_pass_that_continues_the_committed_words_has_only_new_words():
    committed = words((0.0, 0.3, " coffee"), (0.3, 0.6, " and"), (0.6, 0.8, " a"))
    # decoded after the committed words (AlignAtt continues them): its " a" is a new word, not the committed one
    after = words((0.8, 1.0, " good"), (1.0, 1.2, " book"), (1.2, 1.4, " make"), (1.4, 1.5, " a"), (1.5, 1.8, " long"))
    assert Hypothesis(after, continued=True).uncommitted(committed) == after
    # decoded afresh, the same words would be read as the committed tail said again up to " a"
    assert Hypothesis(after).uncommitted(committed) == after[-1:]


def test_alignatt_stops_before_the_first_token_reading_the_last_frames():
    heads, tokens, frames = 2, 6, 100
    weights = np.zeros((heads, 2 + tokens, frames))
    peaks = [10, 30, 50, 80, 60, 90]  # token 3 is the first to attend within 25 frames of the end
    for index, peak in enumerate(peaks):
        weights[:, 1 + index, peak] = 1.0
    assert late_token(weights, 1, tokens, frames, 25) == 3
    assert late_token(weights, 1, tokens, frames, 10) == 5
    assert late_token(weights, 1, tokens, frames, 5) == tokens
    assert late_token(weights, 1, tokens, frames, 0) == tokens
    # token 4 reads 20 frames before token 3: a jump back of more than rewind_threshold stops it too
    assert late_token(weights, 1, tokens, frames, 10, rewind_threshold=15) == 4
    assert late_token(weights, 1, tokens, frames, 10, rewind_threshold=20) == 5


def test_alignatt_does_not_commit_a_word_timed_into_the_last_frames():
    # a buffer ending at 10 s, frame_threshold 25 (0.5 s): words ending at 9.5 s or later wait
    late = 10.0 - 25 * 0.02
    spoken = words((8.0, 8.6, " strong"), (8.6, 9.3, " coffee"), (9.3, 9.7, " and"))
    assert first_late_word(spoken, late) == 2
    assert first_late_word(spoken[:2], late) == 2  # none late: all of them
    # the prompt said again over a buffer of silence: every word squeezed into its end, none committed
    echo = words((9.96, 9.96, " The"), (9.96, 9.98, " orchestra"), (9.98, 10.0, " knew"))
    assert first_late_word(echo, late) == 0
    assert first_late_word([], late) == 0


def test_streaming_options_refuse_unknown_policies():
    with pytest.raises(ValueError, match="policy"):
        StreamingOptions(policy="greedy")


class ScriptedStream:
    """An online processor that takes a fixed time per pass and commits one word per pass."""

    sampling_rate = 100

    def __init__(self) -> None:
        self.received: list[int] = []

    def insert_audio_chunk(self, samples):
        self.received.append(len(samples))

    def process_iter(self):
        end = sum(self.received) / self.sampling_rate
        return [StreamWord(end - 0.5, end, f" w{len(self.received)}")]

    def finish(self):
        return [StreamWord(0.0, sum(self.received) / self.sampling_rate, " last")]


def test_the_simulated_clock_advances_with_the_audio_and_with_each_pass():
    """Passes of 1.5 s on 1 s chunks: the clock falls behind, so each pass takes all audio that arrived."""
    ticks = itertools.count(step=1.5)
    clock = lambda: next(ticks)  # noqa: E731  # every pass takes 1.5 s
    processor = ScriptedStream()
    stats = StreamStats()
    commits = list(simulate(processor, np.zeros(500, np.float32), 1.0, stats, clock=clock))
    assert sum(processor.received) == 500
    # the first pass waits for one chunk; later ones take what arrived while the one before ran
    assert processor.received == [100, 150, 150, 100]
    assert [c.emitted for c in commits] == [2.5, 4.0, 5.5, 7.0, 8.5]
    assert all(c.emitted >= c.word.end for c in commits)
    summary = stats.summary()
    assert summary["words"] == len(commits) and summary["rtf"] == pytest.approx(stats.processing / 5.0)


def bare_processor(buffer_seconds: float) -> OnlineProcessor:
    """An online processor without a model (its buffer bookkeeping only): 100 samples a second, a 30 s
    window, ``buffer_seconds`` of audio from stream time 0."""
    processor = OnlineProcessor.__new__(OnlineProcessor)
    processor.options, processor.sampling_rate, processor.window_seconds = StreamingOptions(), 100, 30.0
    processor.buffer, processor.buffer_start = np.zeros(round(buffer_seconds * 100), np.float32), 0.0
    processor.agreement, processor.tentative, processor.utterance_end = LocalAgreement(), [], 0
    return processor


def test_a_buffer_about_to_outgrow_the_window_commits_its_pending_words_as_they_are():
    """29.5 s of buffer (past the window less its margin): the pending words are committed, including one
    that says the committed tail's word again right after it (" a" after " a": a continued pass's words are
    all new, so no echo check may drop it), and the buffer is cut at the last committed sentence end."""
    processor = bare_processor(29.5)
    processor.agreement.committed.extend(words((17.0, 18.0, " Once"), (18.0, 19.0, " upon"), (19.0, 19.8, " a")))
    processor.agreement.insert(words((19.9, 20.3, " a"), (20.3, 21.0, " time."), (27.0, 28.0, " The")))
    assert processor.agreement.flush() == []  # one pass: all pending
    forced = processor._trim()
    assert [word.text for word in forced] == [" a", " time.", " The"]
    assert [word.text for word in processor.committed] == [" Once", " upon", " a", " a", " time.", " The"]
    assert processor.pending() == []
    assert processor.buffer_start == pytest.approx(21.0) and len(processor.buffer) == 850


def test_a_buffer_under_the_trimming_length_keeps_its_audio_and_its_pending_words():
    """14 s of buffer (under ``buffer_trimming_sec``): nothing committed, nothing cut; 20 s: cut at the last
    committed sentence end, pending words stay pending."""
    processor = bare_processor(14.0)
    processor.agreement.insert(words((1.0, 2.0, " Hello.")))
    processor.agreement.flush()
    assert processor._trim() == [] and processor.buffer_start == 0.0 and processor.pending()
    processor = bare_processor(20.0)
    processor.agreement.committed.extend(words((1.0, 2.0, " Hello."), (2.0, 3.0, " World")))
    processor.agreement.insert(words((3.0, 4.0, " again")))
    processor.agreement.flush()
    assert processor._trim() == [] and processor.buffer_start == pytest.approx(2.0)
    assert [word.text for word in processor.pending()] == [" again"]
