"""Long-form transcription of ~2 minutes of real and synthesized speech with the real tiny.en.

The reference is openai-whisper's own ``transcribe`` on the same weights (written by the
weights bridge as an OpenAI ``.pt``): our loop must give the same segments and words.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import whisper_mb
from tests.core.longform_audio import LongAudio, build_long_audio
from whisper_core import SAMPLE_RATE, WhisperTokenizer
from whisper_core.transcribe import TranscribeOptions, Transcriber, Transcription
from whisper_mb import BACKENDS, load_backend

pytestmark = pytest.mark.slow
OPTIONS = TranscribeOptions(word_timestamps=True)


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory, jfk_path) -> LongAudio:
    return build_long_audio(tmp_path_factory.mktemp("longform"), jfk_path)


@pytest.fixture(scope="module")
def pt_transcriber(tiny_en_dir) -> Transcriber:
    return Transcriber.from_pretrained(load_backend("pt", str(tiny_en_dir)), str(tiny_en_dir))


@pytest.fixture(scope="module")
def pt_result(pt_transcriber, long_audio) -> Transcription:
    return pt_transcriber.transcribe([long_audio.audio], OPTIONS)[0]


@pytest.fixture(scope="module")
def openai_result(tiny_en_dir, long_audio, tmp_path_factory) -> dict:
    """openai-whisper's transcribe on our checkpoint, with the checkpoint's alignment heads."""
    import torch
    import whisper

    from weights_bridge.conversion import convert_checkpoint

    path = convert_checkpoint(tiny_en_dir, tmp_path_factory.mktemp("openai") / "tiny_en.pt", to="openai")
    model = whisper.load_model(str(path), device="cpu")
    heads = json.loads((Path(tiny_en_dir) / "generation_config.json").read_text())["alignment_heads"]
    mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
    mask[tuple(torch.tensor(heads).T)] = True
    model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return whisper.transcribe(model, long_audio.audio, fp16=False, language="en", word_timestamps=True)


@pytest.fixture(scope="module")
def faster_whisper_text(tiny_en_dir, long_audio, tmp_path_factory) -> str:
    """faster-whisper's transcript with the same weights, written by the bridge as CTranslate2 float32."""
    from faster_whisper import WhisperModel

    from weights_bridge.conversion import convert_checkpoint

    directory = convert_checkpoint(tiny_en_dir, tmp_path_factory.mktemp("ct2") / "tiny_en", to="ct2", dtype="float32")
    model = WhisperModel(str(directory), device="cpu", compute_type="float32")
    segments, _ = model.transcribe(long_audio.audio, language="en", beam_size=1)
    return "".join(segment.text for segment in segments)


def _wer(tokenizer: WhisperTokenizer, reference: str, hypothesis: str) -> float:
    import jiwer

    return jiwer.wer(tokenizer.normalize(reference), tokenizer.normalize(hypothesis))


def test_segments_are_ordered_inside_the_audio_and_count_past_30_s(pt_result, long_audio):
    spoken = [segment for segment in pt_result.segments if segment.text.strip()]
    assert len(spoken) >= 12
    starts = [segment.start for segment in spoken]
    assert starts == sorted(starts)
    assert all(s.start < s.end <= long_audio.duration + 0.5 for s in spoken)
    assert all(a.end <= b.start + 0.02 for a, b in itertools.pairwise(spoken))
    assert spoken[-1].start > 90.0, "offsets keep counting past every 30 s window"
    assert len({segment.seek for segment in spoken}) >= 4, "the audio takes several windows"


def test_words_are_where_they_are_spoken(pt_result, long_audio):
    """Every word lies in the clip it belongs to; openai-whisper's boundary heuristics may stretch or squeeze
    a word at a pause, so a few may miss by up to 1 s."""
    words = [word for segment in pt_result.segments for word in segment.words]
    assert len(words) > 200
    clips = long_audio.clips

    def distance(word) -> float:  # from the word's middle to the nearest clip
        middle = (word.start + word.end) / 2
        return min(max(clip.start - middle, middle - clip.end, 0.0) for clip in clips)

    misses = [(word.word, word.start, word.end) for word in words if distance(word) > 0.5]
    assert len(misses) <= 0.03 * len(words), misses
    assert max(distance(word) for word in words) <= 1.0

    for clip in clips:  # some word starts where each clip starts (the file's first word at 0.0, 0.57 s early)
        assert min(abs(word.start - clip.start) for word in words) <= 0.6, clip


def test_word_error_rate_is_low_and_no_worse_than_the_peers(
    pt_result, openai_result, faster_whisper_text, long_audio, tiny_en_dir
):
    tokenizer = WhisperTokenizer.from_pretrained(tiny_en_dir)
    ours = _wer(tokenizer, long_audio.text, pt_result.text)
    openai = _wer(tokenizer, long_audio.text, openai_result["text"])
    faster = _wer(tokenizer, long_audio.text, faster_whisper_text)
    print(f"WER tiny.en on {long_audio.duration:.0f} s: ours {ours:.3f}, openai {openai:.3f}, faster {faster:.3f}")
    assert ours <= 0.12
    assert ours <= openai + 1e-9
    assert ours <= faster + 1e-9


def test_segments_and_words_match_openai_whisper(pt_result, openai_result):
    ours = [s for s in pt_result.segments if s.text]
    theirs = [s for s in openai_result["segments"] if s["text"]]
    assert [s.text for s in ours] == [s["text"] for s in theirs]
    assert np.allclose([s.start for s in ours], [s["start"] for s in theirs], atol=0.021)
    assert np.allclose([s.end for s in ours], [s["end"] for s in theirs], atol=0.021)
    our_words = [w for s in ours for w in s.words]
    their_words = [w for s in theirs for w in s["words"]]
    assert [w.word for w in our_words] == [w["word"] for w in their_words]
    assert np.abs(np.array([w.start for w in our_words]) - [w["start"] for w in their_words]).max() <= 0.021
    assert np.abs(np.array([w.end for w in our_words]) - [w["end"] for w in their_words]).max() <= 0.021


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(name, marks=pytest.mark.skipif(not BACKENDS[name].is_installed(), reason="not installed"))
        for name in ("flax", "tf")
    ],
)
def test_other_backends_give_the_same_transcript(backend, tiny_en_dir, long_audio, pt_result):
    transcriber = Transcriber.from_pretrained(load_backend(backend, str(tiny_en_dir)), str(tiny_en_dir))
    result = transcriber.transcribe([long_audio.audio], OPTIONS)[0]
    assert [s.tokens for s in result.segments] == [s.tokens for s in pt_result.segments]
    times = [time for s in result.segments for time in (s.start, s.end)]
    assert times == pytest.approx([time for s in pt_result.segments for time in (s.start, s.end)])
    ours = [(w.word, w.start, w.end) for s in result.segments for w in s.words]
    reference = [(w.word, w.start, w.end) for s in pt_result.segments for w in s.words]
    assert [w for w, _, _ in ours] == [w for w, _, _ in reference]
    assert np.abs(np.array([t[1:] for t in ours]) - np.array([t[1:] for t in reference])).max() <= 0.021


def test_files_decoded_side_by_side_match_one_by_one(pt_transcriber, long_audio, jfk_audio):
    """Batched long-form: two files of different lengths, each with its own prompt and seek."""
    part = long_audio.audio[: 45 * SAMPLE_RATE]
    options = TranscribeOptions(temperature=(0.0,))
    together = pt_transcriber.transcribe([part, jfk_audio], options)
    alone = [pt_transcriber.transcribe([audio], options)[0] for audio in (part, jfk_audio)]
    assert [r.text for r in together] == [r.text for r in alone]
    assert "ask not what your country can do for you" in together[1].text


def test_token_timestamps_follow_the_words(pt_transcriber, jfk_audio):
    options = TranscribeOptions(return_token_timestamps=True)
    (result,) = pt_transcriber.transcribe([jfk_audio], options)
    times = [t for segment in result.segments for t in segment.token_timestamps]
    assert len(times) == sum(len(segment.text_tokens) for segment in result.segments) > 20
    assert times == sorted(times) and 0.0 <= times[0] < 1.5 and 9.0 < times[-1] <= 11.1


def test_batched_windows_without_vad_transcribe_as_well(pt_transcriber, long_audio, tiny_en_dir):
    """``batch_size`` above 1 without VAD: overlapping windows decoded four at a time, each keeping its middle."""
    (result,) = pt_transcriber.transcribe([long_audio.audio], TranscribeOptions(temperature=(0.0,)), batch_size=4)
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and starts[-1] > 90.0
    wer = _wer(WhisperTokenizer.from_pretrained(tiny_en_dir), long_audio.text, result.text)
    print(f"WER batched windows: {wer:.3f}")
    assert wer <= 0.15
    with pytest.raises(ValueError, match="clip_timestamps"):  # refused, not silently ignored
        pt_transcriber.transcribe([long_audio.audio], TranscribeOptions(clip_timestamps=(0.0, 10.0)), batch_size=4)


def test_command_line_writes_subtitles_and_reports_bad_files(jfk_path, tmp_path):
    executable = Path(sys.executable).parent / "whisper-mb"
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    command = [str(executable), "transcribe", str(bad), str(jfk_path), "--output-format", "srt"]
    command += ["--output-dir", str(tmp_path), "--word-timestamps", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1 and "broken.wav" in result.stderr
    srt = (tmp_path / "jfk.srt").read_text()
    assert srt.startswith("1\n00:00:00,000 --> 00:00:") and "ask not what your country can do for you" in srt
    assert json.loads(result.stdout.splitlines()[-1])["written"] == [str(tmp_path / "jfk.srt")]


def test_transcribe_loads_a_backend_by_name_and_transcribes(tiny_en_dir, jfk_audio):
    """``whisper_mb.transcribe``: the one call from audio to text, with the backend picked by name."""
    from tests.conftest import JFK_TEXT
    from whisper_core.normalizers import EnglishTextNormalizer

    (result,) = whisper_mb.transcribe([jfk_audio], str(tiny_en_dir), backend="pt")
    normalize = EnglishTextNormalizer()
    assert normalize(result.text) == normalize(JFK_TEXT)
    assert result.language == "en" and result.segments[-1].end == pytest.approx(11.0, abs=0.5)


def test_a_detected_language_costs_no_second_encoding_of_the_first_window(base_dir, jfk_audio):
    """Real multilingual base on 33 s of jfk: detecting the language encodes the first 30 s, which is the first
    window too; the transcript is the one with the language given, and the encoder runs as often."""
    backend = load_backend("pt", str(base_dir))
    transcriber = Transcriber.from_pretrained(backend, str(base_dir))
    encoded = []
    encode = backend.encode
    backend.encode = lambda features: encoded.append(len(features)) or encode(features)
    audio = np.concatenate([jfk_audio] * 3)
    options = TranscribeOptions(temperature=(0.0,))
    (detected,) = transcriber.transcribe([audio], options)
    runs_detecting, encoded[:] = list(encoded), []
    (given,) = transcriber.transcribe([audio], dataclasses.replace(options, language="en"))
    assert detected.language == given.language == "en"
    assert detected.text == given.text and "ask not what your country can do for you" in detected.text
    assert runs_detecting == encoded and len(encoded) >= 2  # both windows once, the first shared with detection
