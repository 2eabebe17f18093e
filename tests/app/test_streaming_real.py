"""Streaming on real speech with the real tiny.en: both policies, voice activity control, every backend,
and ``whisper-mb stream`` as a user runs it."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import JFK_TEXT
from tests.core.longform_audio import LongAudio, build_long_audio
from tests.helpers import english_wer
from whisper_core import SAMPLE_RATE
from whisper_core.streaming import POLICIES, OnlineProcessor, StreamingOptions, StreamStats, simulate
from whisper_core.transcribe import TranscribeOptions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory, jfk_path) -> LongAudio:
    return build_long_audio(tmp_path_factory.mktemp("longform"), jfk_path)


@pytest.fixture(scope="module")
def offline_text(transcribers, long_audio) -> str:
    return transcribers["pt"].transcribe([long_audio.audio], TranscribeOptions())[0].text


def passes_taking(seconds: float):
    """A clock for ``simulate`` under which every pass takes ``seconds``: the chunks each pass sees, and so
    the words, do not depend on how busy the machine is."""
    ticks = itertools.count(step=seconds)
    return lambda: next(ticks)


def _stream(transcriber, audio, options, clock=None):
    stats = StreamStats()
    kwargs = {} if clock is None else {"clock": clock}
    commits = list(simulate(OnlineProcessor(transcriber, options), audio, 1.0, stats, **kwargs))
    return commits, stats


# Passes of 0.5 s keep up with 1 s chunks; passes of 2.5 s fall behind, so each one hears 2.5 s of new
# speech (base on this CPU): AlignAtt once committed hallucinated repeats there (459 words for 236).
@pytest.mark.parametrize("pass_seconds", [0.5, 2.5], ids=["keeping-up", "falling-behind"])
@pytest.mark.parametrize("policy", POLICIES)
def test_streamed_text_is_as_good_as_offline_and_never_taken_back(
    transcribers, long_audio, offline_text, policy, pass_seconds
):
    options = StreamingOptions(policy=policy)
    commits, stats = _stream(transcribers["pt"], long_audio.audio, options, passes_taking(pass_seconds))
    text = "".join(commit.word.text for commit in commits)
    wer, offline = english_wer(long_audio.text, text), english_wer(long_audio.text, offline_text)
    print(f"{policy}, passes of {pass_seconds} s: WER {wer:.3f} (offline {offline:.3f}), {stats.summary()}")
    assert wer <= offline + 0.05
    spoken = len(long_audio.text.split())
    assert abs(len(commits) - spoken) <= 0.1 * spoken, f"{len(commits)} words committed for {spoken} spoken"
    words = [commit.word for commit in commits]
    starts = [word.start for word in words]
    assert starts == sorted(starts), "committed words come in the order they are spoken"
    assert all(0.0 <= w.start <= w.end <= long_audio.duration for w in words)
    assert all(later.start >= earlier.end for earlier, later in itertools.pairwise(words))
    emitted = [commit.emitted for commit in commits]
    assert emitted == sorted(emitted) and all(c.emitted >= c.word.end - 1e-6 for c in commits)
    summary = stats.summary()
    assert summary["words"] == len(words) and summary["latency_mean"] > 0 and summary["rtf"] > 0


@pytest.mark.parametrize("vac", [False, True])
@pytest.mark.parametrize("policy", POLICIES)
def test_a_stream_of_silence_commits_nothing(transcribers, policy, vac):
    silence = np.zeros(20 * SAMPLE_RATE, np.float32)
    commits, _ = _stream(transcribers["pt"], silence, StreamingOptions(policy=policy, vac=vac))
    assert commits == []


def test_voice_activity_control_commits_at_pauses_and_skips_noise(transcribers, mixed_audio):
    """60 s of speech between noise and tones: nothing is said in non-speech, and each sentence is committed
    within about a second of its end (the pause after it ends the utterance)."""
    audio = mixed_audio.audio[: 60 * SAMPLE_RATE]
    commits, stats = _stream(transcribers["pt"], audio, StreamingOptions(vac=True), passes_taking(0.5))
    clips = [clip for clip in mixed_audio.clips if clip.end <= 60]
    assert commits
    for commit in commits:
        word = commit.word
        assert any(c.start - 0.5 <= word.start and word.end <= c.end + 0.5 for c in clips), word
    reference = " ".join(clip.text for clip in clips)
    assert english_wer(reference, "".join(c.word.text for c in commits)) < 0.3
    print("vac:", stats.summary())


def test_every_backend_streams_the_same_words(transcribers, long_audio):
    """With a clock that ignores processing time every backend sees the same chunks, so the words must agree;
    once warm, a compiled backend compiles nothing per chunk."""
    audio = long_audio.audio[: 40 * SAMPLE_RATE]
    options = StreamingOptions(policy="alignatt")
    expected, _ = _stream(transcribers["pt"], audio, options, passes_taking(0.0))
    for backend in ("tf", "flax"):
        commits, _ = _stream(transcribers[backend], audio, options, passes_taking(0.0))
        assert [c.word.text for c in commits] == [c.word.text for c in expected], backend
        model = transcribers[backend].backend.model
        traces = model._loop_traces
        _stream(transcribers[backend], long_audio.audio[40 * SAMPLE_RATE : 70 * SAMPLE_RATE], options)
        assert model._loop_traces == traces, backend


def test_command_line_streams_a_file_and_standard_input(jfk_path, jfk_audio):
    """Both modes pace the audio by the wall clock, so the chunks (and a word or two) depend on the machine's
    speed: the words are checked by their error rate, not verbatim."""
    executable = str(Path(sys.executable).parent / "whisper-mb")
    run = subprocess.run([executable, "stream", str(jfk_path), "--policy", "alignatt"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    words, summary = lines[:-1], lines[-1]["summary"]
    assert english_wer(JFK_TEXT, "".join(w["text"] for w in words)) < 0.2
    assert all(set(w) == {"emitted", "start", "end", "text"} for w in words)
    assert summary["words"] == len(words) and summary["latency_p90"] >= summary["latency_mean"] * 0.5
    pcm = (np.clip(jfk_audio, -1, 1) * 32767).astype("<i2").tobytes()
    piped = subprocess.run([executable, "stream", "--stdin"], input=pcm, capture_output=True)
    assert piped.returncode == 0, piped.stderr
    lines = [json.loads(line) for line in piped.stdout.decode().splitlines()]
    assert english_wer(JFK_TEXT, "".join(w["text"] for w in lines[:-1])) < 0.2
    refused = subprocess.run([executable, "stream", str(jfk_path), "--stdin"], capture_output=True, text=True)
    assert refused.returncode == 2 and "not both" in refused.stderr


@pytest.mark.parametrize("vac", [False, True])
def test_finish_commits_a_buffer_longer_than_a_window_whole(transcribers, jfk_audio, vac):
    """A server under load may hand over a minute at once before the end: nothing past the first window is lost."""
    audio = np.concatenate([jfk_audio, np.zeros(SAMPLE_RATE, np.float32)] * 4)  # 48 s
    processor = OnlineProcessor(transcribers["pt"], StreamingOptions(vac=vac))
    processor.insert_audio_chunk(audio)
    words = processor.finish()
    text = "".join(word.text for word in words)
    assert english_wer(" ".join([JFK_TEXT] * 4), text) <= 0.05, text
    ends = [word.end for word in words]
    assert ends == sorted(ends) and ends[-1] > 44.0 and ends[-1] <= len(audio) / SAMPLE_RATE
