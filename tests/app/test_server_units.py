"""The server's pure parts without a process: messages, the API key, multipart reading, metrics, temperatures."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from whisper_core.streaming import StreamWord
from whisper_mb.server.audio_input import PcmDecoder
from whisper_mb.server.auth import is_authorized
from whisper_mb.server.messages import format_time, lines_of, tcp_line, update
from whisper_mb.server.metrics import Metrics
from whisper_mb.server.openai_api import _temperatures
from whisper_mb.server.uploads import UploadError, read_form


def test_times_are_whisperlivekits() -> None:
    assert format_time(0) == "0:00:00.00"
    assert format_time(75.304) == "0:01:15.30"
    assert format_time(3725.5) == "1:02:05.50"
    assert format_time(-0.2) == "0:00:00.00"


def test_lines_split_at_sentences_and_pauses() -> None:
    words = [
        StreamWord(0.0, 0.4, " And"),
        StreamWord(0.4, 0.9, " so."),
        StreamWord(1.0, 1.3, " Ask"),
        StreamWord(1.3, 1.6, " not"),
        StreamWord(4.0, 4.5, " what"),
    ]
    lines = lines_of(words)
    assert [line["text"] for line in lines] == [" And so.", " Ask not", " what"]
    assert lines[1] == {"speaker": 1, "text": " Ask not", "start": "0:00:01.00", "end": "0:00:01.60"}
    message = update(words, [StreamWord(4.6, 5.0, " your")], lag=0.456)
    assert message["buffer_transcription"] == " your" and message["remaining_time_transcription"] == 0.46
    assert message["status"] == "active_transcription"
    assert update([], [], 0.0)["status"] == "no_audio_detected"
    assert tcp_line(words[2:4]) == "1000 1600 Ask not\n"


def test_api_key_from_header_or_query() -> None:
    assert is_authorized(None, {}, {})
    assert is_authorized("k", {"authorization": "Bearer k"}, {})
    assert is_authorized("k", {"authorization": "bearer  k "}, {})
    assert is_authorized("k", {}, {"token": "k"})
    assert not is_authorized("k", {}, {})
    assert not is_authorized("k", {"authorization": "Bearer x"}, {"token": "k"})  # the header wins
    assert not is_authorized("k", {"authorization": "Basic k"}, {})


def _multipart(fields: list[tuple[str, bytes, str | None]], boundary: str = "b0und") -> bytes:
    body = b""
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def _read(body: bytes, limit: int, declared: int | None = None, chunk: int = 7):
    async def stream():
        for offset in range(0, len(body), chunk):
            yield body[offset : offset + chunk]

    return asyncio.run(read_form("multipart/form-data; boundary=b0und", stream(), limit, declared))


def test_multipart_is_read_in_memory_with_repeated_fields() -> None:
    body = _multipart(
        [
            ("model", b"whisper-1", None),
            ("timestamp_granularities[]", b"word", None),
            ("timestamp_granularities[]", b"segment", None),
            ("file", b"\x00\x01RIFF\r\n--b0un", "a.wav"),
        ]
    )
    form = _read(body, limit=1000)
    assert form.value("model") == "whisper-1"
    assert form.values("timestamp_granularities[]") == ["word", "segment"]
    upload = form.file("file")
    assert upload.filename == "a.wav" and bytes(upload.data) == b"\x00\x01RIFF\r\n--b0un"
    assert form.value("missing") is None and form.file("missing") is None


def test_multipart_limits_and_malformed_bodies() -> None:
    body = _multipart([("file", b"x" * 5000, "a.wav")])
    with pytest.raises(UploadError) as raised:
        _read(body, limit=1000)
    assert raised.value.status == 413
    with pytest.raises(UploadError) as raised:  # the declared length alone refuses it, before reading
        asyncio.run(read_form("multipart/form-data; boundary=b0und", _never(), 1000, declared=10**9))
    assert raised.value.status == 413
    with pytest.raises(UploadError, match="multipart/form-data"):
        asyncio.run(read_form("application/json", _never(), 1000, None))
    with pytest.raises(UploadError, match="malformed") as raised:
        _read(b"--b0und\r\nno headers end", limit=1000)
    assert raised.value.status == 400


async def _never():
    raise AssertionError("the body was read")
    yield b""  # pragma: no cover  # an async generator


def test_pcm_frames_may_split_a_sample() -> None:
    received: list[np.ndarray] = []
    decoder = PcmDecoder(received.append)
    samples = (np.array([0, 1000, -1000, 32767, -32768], dtype="<i2")).tobytes()
    decoder.feed(samples[:3])
    decoder.feed(samples[3:])
    joined = np.concatenate(received)
    np.testing.assert_array_equal(joined * 32768, [0, 1000, -1000, 32767, -32768])


def test_metrics_text() -> None:
    metrics = Metrics()
    metrics.requests["/asr"] += 2
    metrics.errors["/v1/audio/transcriptions"] += 1
    metrics.audio_seconds["upload"] += 10.0
    metrics.processing_seconds = 2.5
    metrics.open_streams = 1
    text = metrics.render()
    assert 'whisper_mb_requests_total{route="/asr"} 2' in text
    assert 'whisper_mb_errors_total{route="/v1/audio/transcriptions"} 1' in text
    assert "whisper_mb_real_time_factor 0.25" in text and "whisper_mb_open_streams 1" in text
    assert "# TYPE whisper_mb_audio_seconds_total counter" in text and text.endswith("\n")


def test_openai_temperature() -> None:
    assert _temperatures(None) == _temperatures("0") == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert _temperatures("0.5") == (0.5, 0.7, 0.9)
    assert _temperatures("1") == (1.0,)
    for bad in ("hot", "-0.1", "1.5"):
        with pytest.raises(UploadError):
            _temperatures(bad)
